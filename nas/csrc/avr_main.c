/* ATmega328P firmware for simavr: runs the model on the test inputs kept in flash (the
 * model streams them with pgm_read_byte), times each run with Timer1 at the CPU clock
 * (prescaler 1, overflows counted by an interrupt), prints the protocol of sim.py on the
 * UART ("out=<hex>;cnt=<hex>;" per input, "op=<hex>;" per marked phase when profiling,
 * "stack=<hex>;"), then sleeps with interrupts off, which ends the simulation. */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>

#include "nas_model.h"
#include "nas_rom.h"
#define NAS_TEST_DATA NAS_ROM /* streamed from flash like a sensor */
#include "nas_test_data.h"

#define STACK_FILL 0xA5

extern uint8_t __heap_start;
static volatile uint16_t overflows;

ISR(TIMER1_OVF_vect) { ++overflows; }

static uint32_t now(void) { /* cycles since the run started; interrupts must be on */
    cli();
    uint16_t t = TCNT1;
    uint32_t ov = overflows;
    if ((TIFR1 & (1 << TOV1)) && t < 0x8000u) ++ov; /* overflow not yet serviced */
    sei();
    return (ov << 16) | t;
}

#ifdef NAS_PROFILE
#define NAS_MAX_MARKS 16
static uint32_t mark_at[NAS_MAX_MARKS];
static uint8_t marks;
void nas_mark(int op) {
    (void)op;
    if (marks < NAS_MAX_MARKS) mark_at[marks++] = now();
}
#endif

static void put_char(char c) {
    while (!(UCSR0A & (1 << UDRE0))) {
    }
    UDR0 = c;
}

static void put(const char *s) {
    while (*s) put_char(*s++);
}

static void put_hex(uint32_t v, int digits) {
    for (int i = digits - 1; i >= 0; --i) put_char("0123456789abcdef"[(v >> (4 * i)) & 15u]);
}

int main(void) {
    uint8_t *sp = (uint8_t *)SP;
    for (uint8_t *p = &__heap_start; p < sp - 32; ++p) *p = STACK_FILL;
    UBRR0H = 0;
    UBRR0L = 8;
    UCSR0B = (1 << TXEN0);
    UCSR0C = (3 << UCSZ00);
    TCCR1A = 0;
    TCCR1B = (1 << CS10); /* clk/1: one count per CPU cycle */
    TIMSK1 = (1 << TOIE1);
    static int8_t out[NAS_OUTPUT_BYTES];
    for (int n = 0; n < NAS_TEST_COUNT; ++n) {
        cli();
        overflows = 0;
        TCNT1 = 0;
        TIFR1 = (1 << TOV1);
        sei();
        nas_model_run(nas_test_inputs[n], out);
        const uint32_t cycles = now();
        put("out=");
        for (int i = 0; i < NAS_OUTPUT_BYTES; ++i) put_hex((uint8_t)out[i], 2);
        put(";cnt=");
        put_hex(cycles, 8);
        put(";\n");
#ifdef NAS_PROFILE
        uint32_t prev = 0;
        for (uint8_t m = 0; m < marks; ++m) {
            put("op=");
            put_hex(mark_at[m] - prev, 8);
            put(";\n");
            prev = mark_at[m];
        }
        marks = 0;
#endif
    }
    uint8_t *p = &__heap_start;
    while (p < (uint8_t *)RAMEND && *p == STACK_FILL) ++p;
    put("stack=");
    put_hex((uint32_t)((uint8_t *)RAMEND + 1 - p), 8);
    put(";\n");
    cli();
    sleep_enable();
    sleep_cpu();
    return 0;
}
