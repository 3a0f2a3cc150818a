// Clang thread-safety annotations (-Wthread-safety), as LevelDB and TCMalloc
// spell them. With another compiler they expand to nothing.
//
//   GUARDED_BY(mu)        this member is read and written only with mu held
//   PT_GUARDED_BY(mu)     what this pointer points to is guarded by mu
//   REQUIRES(mu)          the caller holds mu
//   REQUIRES_SHARED(mu)   the caller holds mu, at least shared (SharedMutex)
//   EXCLUDES(mu)          the caller must not hold mu (the function takes it)
//   ACQUIRED_AFTER(mu)    lock order: this lock is taken only after mu
//   ACQUIRED_BEFORE(mu)   lock order: this lock is taken before mu
//
// CI builds the tree with clang and -Werror=thread-safety (the clang-tsa
// preset, scripts/test.sh), so a missing lock is a build error. Use the
// annotated sharry::Mutex of base/mutex.h: libstdc++'s std::mutex carries no
// capability attribute.
#pragma once

#if defined(__clang__)
#define SHARRY_TSA(x) __attribute__((x))
#else
#define SHARRY_TSA(x)
#endif

#define CAPABILITY(x) SHARRY_TSA(capability(x))
#define SCOPED_CAPABILITY SHARRY_TSA(scoped_lockable)
#define GUARDED_BY(x) SHARRY_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) SHARRY_TSA(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) SHARRY_TSA(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) SHARRY_TSA(acquired_after(__VA_ARGS__))
#define REQUIRES(...) SHARRY_TSA(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) SHARRY_TSA(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) SHARRY_TSA(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) SHARRY_TSA(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) SHARRY_TSA(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) SHARRY_TSA(release_shared_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) SHARRY_TSA(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) SHARRY_TSA(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) SHARRY_TSA(assert_capability(x))
#define RETURN_CAPABILITY(x) SHARRY_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS SHARRY_TSA(no_thread_safety_analysis)
