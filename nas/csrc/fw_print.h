/* put_int(): a decimal number, put_class(): the result line every firmware prints,
 * through the put() the firmware defined before including this (semihosting on
 * Cortex-M, the UART on the ATmega328P). */
#ifndef NAS_FW_PRINT_H
#define NAS_FW_PRINT_H

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

/* "class 3 (expected 3, label 3)": the model's class, the Python model's, the label */
static void put_class(int cls, int expected, int label) {
    put("class ");
    put_int(cls);
    put(" (expected ");
    put_int(expected);
    put(", label ");
    put_int(label);
    put(")\n");
}
#endif
