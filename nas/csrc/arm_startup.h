/* Startup code for a Cortex-M firmware on QEMU's mps2-an386 board (the memory map of
 * arm.ld): vector table, a reset handler that copies .data, clears .bss, optionally
 * paints the stack (NAS_PAINT_STACK, to measure its high-water mark), calls main() and
 * exits through Arm semihosting with its status; put() writes a string the same way. */
#ifndef NAS_ARM_STARTUP_H
#define NAS_ARM_STARTUP_H
#include <stdint.h>

#define STACK_FILL 0xA5A5A5A5u

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
int main(void);

static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void put(const char *s) { semihost(0x04, s); } /* SYS_WRITE0 */

void Reset_Handler(void) {
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; ++dst) *dst = 0;
#ifdef NAS_PAINT_STACK
    /* paint the stack below this frame to measure its high-water mark */
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (dst = &_sstack; dst < sp - 16; ++dst) *dst = STACK_FILL;
#endif
    int code = main();
    /* SYS_EXIT; on AArch32 the reason code itself is the argument:
     * ADP_Stopped_ApplicationExit (0x20026) or ADP_Stopped_RunTimeErrorUnknown (0x20023) */
    semihost(0x18, (const void *)(code == 0 ? 0x20026u : 0x20023u));
    for (;;) {
    }
}

static void Default_Handler(void) {
    put("fault\n");
    semihost(0x18, (const void *)0x20023u);
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler,
    Default_Handler, 0, Default_Handler, Default_Handler,
};
#endif
