// Copyright 2024 The Sharry Authors.
//
// CpuRelax(): the body of a spin-wait loop (PAUSE on x86, YIELD on arm64).

#ifndef SHARRY_ALLOC_CPU_RELAX_H_
#define SHARRY_ALLOC_CPU_RELAX_H_

namespace sharry::alloc {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_CPU_RELAX_H_
