/* Firmware for an ATmega328P (Arduino Uno), written by mcu-nas with the model: one
 * inference on the embedded test sample, the predicted class printed on the UART
 * (115200 baud at 16 MHz; simavr prints it), then sleep with interrupts off, which ends a
 * simulation. The model reads its input from flash (NAS_RD8), so the sample is stored
 * there already converted to int8 (nas_preprocess() does the conversion for live
 * sensor data into RAM; see README.md). */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>

#include "nas_io.h"
#include "nas_model.h"
#include "nas_rom.h"
#include "nas_sample.h"

static void put_char(char c) {
    while (!(UCSR0A & (1 << UDRE0))) {
    }
    UDR0 = c;
}

static void put(const char *s) {
    while (*s) put_char(*s++);
}

#include "fw_print.h"

int main(void) {
    UBRR0H = 0;
    UBRR0L = 8; /* 115200 baud at 16 MHz */
    UCSR0B = (1 << TXEN0);
    UCSR0C = (3 << UCSZ00);
    static int8_t out[NAS_OUTPUT_BYTES];
    nas_model_run(nas_sample_input, out);
    int cls = nas_predicted_class(out);
    put_class(cls, NAS_SAMPLE_EXPECTED, NAS_SAMPLE_LABEL);
    cli();
    sleep_enable();
    sleep_cpu();
    return 0;
}
