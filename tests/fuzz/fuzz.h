/* fuzz.h: helpers shared by the libFuzzer harnesses in tests/fuzz/.
 *
 * Each harness defines LLVMFuzzerTestOneInput. Built with
 * -DMODELC_FUZZ=ON (clang) it links libFuzzer; in every other build it
 * links replay_main.c, which runs the inputs named on the command line
 * once each (the regression corpus in tests/fuzz/regressions/). */
#ifndef MODELC_FUZZ_H
#define MODELC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A stream that discards what is written to it (diagnostics), opened once. */
FILE *fuzz_null_stream(void);
/* A path private to this process under /dev/shm (else /tmp), with the
 * given suffix: harnesses of readers that take a path write the input
 * there. The file is removed at exit. */
const char *fuzz_temp_path(const char *suffix);
/* Writes data to path; 0 on success. */
int fuzz_write(const char *path, const uint8_t *data, size_t size);

#endif
