/* Firmware for a Cortex-M board, written by mcu-nas with the model: startup code (vector
 * table, reset handler that copies .data and clears .bss), then one inference on the
 * embedded test sample: raw pixel values -> nas_preprocess() -> nas_model_run() -> the
 * predicted class, printed through Arm semihosting (QEMU prints it; on a board, a
 * debugger does, or replace put() with your UART). The exit code says whether the input
 * bytes and the class are the ones the Python pipeline made of the same sample. */
#include <stdint.h>

#include "arm_startup.h"
#include "nas_io.h"
#include "nas_model.h"
#include "nas_sample.h"

#include "fw_print.h"

/* How far an input byte may be from Python's: 0, or 1 int8 step for a fixed-point
 * front-end (nas_frontend.c), whose stated tolerance that is. */
#ifndef NAS_INPUT_TOLERANCE
#define NAS_INPUT_TOLERANCE 0
#endif

int main(void) {
    static int8_t input[NAS_INPUT_BYTES];
    static int8_t out[NAS_OUTPUT_BYTES];
    nas_preprocess(nas_sample_raw, input);
    int differ = 0;
    for (int i = 0; i < NAS_INPUT_BYTES; ++i) {
        int d = input[i] - nas_sample_input[i];
        differ += d > NAS_INPUT_TOLERANCE || d < -NAS_INPUT_TOLERANCE;
    }
    nas_model_run(input, out);
    int cls = nas_predicted_class(out);
    put("input bytes differing from the Python preprocessing: ");
    put_int(differ);
    if (NAS_INPUT_TOLERANCE) put(" (by more than 1 int8 step, the front-end's tolerance)");
    put("\n");
    put_class(cls, NAS_SAMPLE_EXPECTED, NAS_SAMPLE_LABEL);
    return cls == NAS_SAMPLE_EXPECTED && differ == 0 ? 0 : 1;
}
