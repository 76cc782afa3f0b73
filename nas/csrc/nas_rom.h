/* Constants in program memory: PROGMEM and pgm_read_* on AVR (Harvard: flash is not
 * data memory), plain const reads everywhere else. */
#ifndef NAS_ROM_H
#define NAS_ROM_H
#include <stdint.h>
#include <string.h>
#ifdef __AVR__
#include <avr/pgmspace.h>
#define NAS_ROM PROGMEM
#define NAS_RD8(p) pgm_read_byte(p)
#define NAS_RD32(p) ((int32_t)pgm_read_dword(p))
#else
#define NAS_ROM
#define NAS_RD8(p) (*(const uint8_t *)(p))
#define NAS_RD32(p) (*(const int32_t *)(p))
#endif
#endif
