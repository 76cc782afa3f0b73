/* What the QEMU measurement harnesses share (arm_main.c for a model, the front-end's in
 * nas_backend_c_sim/frontend.py): the SysTick counter, hex output and the stack's
 * high-water mark, printed in the protocol nas_backend_c_sim/sim.py parses. Include after
 * arm_startup.h (with NAS_PAINT_STACK defined). */
#ifndef ARM_MEASURE_H
#define ARM_MEASURE_H
#include <stdint.h>

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

/* SysTick counting down from 2^24 - 1 at the processor clock, no interrupt. */
static void systick_start(void) {
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u;
}

static void put_hex(uint32_t v, int digits, char *buf) {
    for (int i = digits - 1; i >= 0; --i, v >>= 4) buf[i] = "0123456789abcdef"[v & 15u];
    buf[digits] = 0;
}

/* "stack=<hex>;": the bytes of the painted stack that were written (buf: 9 chars). */
static void put_stack_used(char *buf) {
    uint32_t *w = &_sstack;
    while (w < &_estack && *w == STACK_FILL) ++w;
    put_hex((uint32_t)((uint8_t *)&_estack - (uint8_t *)w), 8, buf);
    put("stack=");
    put(buf);
    put(";\n");
}
#endif
