/* Firmware for a Cortex-M board, written by mcu-nas with the model: startup code (vector
 * table, reset handler that copies .data and clears .bss), then one inference on the
 * embedded test sample: raw pixel values -> nas_preprocess() -> nas_model_run() -> the
 * predicted class, printed through Arm semihosting (QEMU prints it; on a board, a
 * debugger does, or replace put() with your UART). The exit code says whether the input
 * bytes and the class are the ones the Python pipeline made of the same sample. */
#include <stdint.h>

#include "nas_io.h"
#include "nas_model.h"
#include "nas_sample.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void put(const char *s) { semihost(0x04, s); } /* SYS_WRITE0 */

static void put_int(int v) {
    char buf[12], *p = buf + sizeof buf - 1;
    unsigned u = v < 0 ? 0u - (unsigned)v : (unsigned)v;
    *p = 0;
    do {
        *--p = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    if (v < 0) *--p = '-';
    put(p);
}

void Reset_Handler(void) {
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; ++dst) *dst = 0;
    int code = main();
    /* SYS_EXIT: ADP_Stopped_ApplicationExit (0x20026) or RunTimeErrorUnknown (0x20023) */
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

int main(void) {
    static int8_t input[NAS_INPUT_BYTES];
    static int8_t out[NAS_OUTPUT_BYTES];
    nas_preprocess(nas_sample_raw, input);
    int differ = 0;
    for (int i = 0; i < NAS_INPUT_BYTES; ++i) differ += input[i] != nas_sample_input[i];
    nas_model_run(input, out);
    int cls = nas_predicted_class(out);
    put("input bytes differing from the Python preprocessing: ");
    put_int(differ);
    put("\n");
    put("class ");
    put_int(cls);
    put(" (expected ");
    put_int(NAS_SAMPLE_EXPECTED);
    put(", label ");
    put_int(NAS_SAMPLE_LABEL);
    put(")\n");
    return cls == NAS_SAMPLE_EXPECTED && differ == 0 ? 0 : 1;
}
