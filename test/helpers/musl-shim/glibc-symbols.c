/*
 * For the release test only: the seven glibc-only symbols that Debian's libstdc++.so.6 and
 * libgcc_s.so.1 (built for glibc) ask of the C library, so that musl's loader can run the
 * linux-x64-musl binary with them (Debian ships musl but no C++ runtime built for musl; Alpine's
 * `apk add libstdc++ libgcc` is what a real musl system uses). Built as a shared object named
 * ld-linux-x86-64.so.2, which libstdc++ lists as needed; every other symbol comes from musl.
 */
#include <locale.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/random.h>
#include <time.h>

size_t strftime_l(char *, size_t, const char *, const struct tm *, locale_t);

uint32_t arc4random(void) {
  uint32_t v = 0;
  getrandom(&v, sizeof v, 0);
  return v;
}

size_t __strftime_l(char *s, size_t n, const char *f, const struct tm *t, locale_t l) {
  return strftime_l(s, n, f, t, l);
}

/* Thread-local destructors are not run at thread exit (the test's commands exit the process). */
int __cxa_thread_atexit_impl(void (*dtor)(void *), void *obj, void *dso) {
  (void)dtor;
  (void)obj;
  (void)dso;
  return 0;
}

char __libc_single_threaded = 0;

/* "Not supported": libgcc's unwinder then walks dl_iterate_phdr, which musl has. */
int _dl_find_object(void *pc, void *result) {
  (void)pc;
  (void)result;
  return -1;
}

/* CPU feature bits libgcc_s may read: none claimed. */
struct {
  unsigned int vendor, type, subtype, features[1];
} __cpu_model;

int __cpu_indicator_init(void) { return 0; }
