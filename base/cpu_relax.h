// CpuRelax(): the body of a spin-wait loop (PAUSE on x86, YIELD on arm64,
// nothing elsewhere). The one spelling of it in the tree: the allocator's
// rings and completions, the transports' idle backoff (base/backoff.h) and
// the compute runtime's spin waits all call this.
#pragma once

namespace sharry {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace sharry
