/* Cortex-M firmware for QEMU (mps2-an386): runs the model on the embedded test inputs,
 * prints each output in hex and the SysTick ticks it took, and the stack high-water mark,
 * through Arm semihosting; then exits QEMU. Vector table, reset handler and semihosting
 * calls are in arm_startup.h; newlib provides memcpy/memmove. */
#include <stdint.h>

#define NAS_PAINT_STACK
#include "arm_startup.h"
#include "nas_model.h"
#define NAS_TEST_DATA __attribute__((section(".nas_test"))) /* not model flash */
#include "nas_test_data.h"

#include "arm_measure.h"

#ifdef NAS_PROFILE
#define NAS_MAX_OPS 256
static uint32_t op_end[NAS_MAX_OPS];
static int marks;
void nas_mark(int op) {
    (void)op;
    if (marks < NAS_MAX_OPS) op_end[marks++] = SYST_CVR;
}
#endif

int main(void) {
    /* the protocol every harness prints (see sim.py): "out=<hex>;cnt=<hex>;" per input,
     * "op=<hex>;" per marked op when profiling, then "stack=<hex>;" */
    static int8_t out[NAS_OUTPUT_BYTES];
    char line[2 * NAS_OUTPUT_BYTES + 9]; /* the hex outputs, or one 8-digit count */
    systick_start();
    for (int n = 0; n < NAS_TEST_COUNT; ++n) {
        uint32_t start = SYST_CVR;
        nas_model_run(nas_test_inputs[n], out);
        uint32_t ticks = (start - SYST_CVR) & 0x00FFFFFFu;
        for (int i = 0; i < NAS_OUTPUT_BYTES; ++i) put_hex((uint8_t)out[i], 2, line + 2 * i);
        put("out=");
        put(line);
        put_hex(ticks, 8, line);
        put(";cnt=");
        put(line);
        put(";\n");
#ifdef NAS_PROFILE
        uint32_t prev = start;
        for (int op = 0; op < marks; ++op) {
            put("op=");
            put_hex((prev - op_end[op]) & 0x00FFFFFFu, 8, line);
            put(line);
            put(";\n");
            prev = op_end[op];
        }
        marks = 0;
#endif
    }
    put_stack_used(line);
    return 0;
}
