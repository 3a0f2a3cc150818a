// sharry::Mutex, MutexLock and CondVar: std::mutex and
// std::condition_variable with Clang thread-safety annotations
// (base/thread_annotations.h), after LevelDB's port::Mutex; SharedMutex
// with ReaderMutexLock/WriterMutexLock: std::shared_mutex, likewise.
//
//   class Queue {
//     Mutex mu_;
//     CondVar nonempty_;
//     std::deque<int> items_ GUARDED_BY(mu_);
//    public:
//     void Push(int v) EXCLUDES(mu_) {
//       MutexLock l(&mu_);
//       items_.push_back(v);
//       nonempty_.Signal();
//     }
//     int Pop() EXCLUDES(mu_) {
//       MutexLock l(&mu_);
//       while (items_.empty()) nonempty_.Wait(&mu_);  // a loop, not a
//       ...                                           // predicate lambda:
//     }                                               // the analysis cannot
//   };                                                // see into lambdas
//
// Mutex also has lock()/unlock(), so std::scoped_lock and
// std::condition_variable_any still work where an API needs BasicLockable;
// the analysis understands only MutexLock and Lock()/Unlock().
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "base/thread_annotations.h"

namespace sharry {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  [[nodiscard]] bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis that the caller holds the lock (for callbacks whose
  // caller took it). Checks nothing at run time.
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

  // BasicLockable, for std:: utilities.
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// A reader/writer lock: many readers (ReaderMutexLock) or one writer
// (WriterMutexLock). A member read under either is GUARDED_BY it; one that
// is written must be written under the writer lock.
class CAPABILITY("shared_mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  void ReaderLock() ACQUIRE_SHARED() { mu_.lock_shared(); }
  void ReaderUnlock() RELEASE_SHARED() { mu_.unlock_shared(); }
  [[nodiscard]] bool TryLockShared() TRY_ACQUIRE_SHARED(true) { return mu_.try_lock_shared(); }

 private:
  std::shared_mutex mu_;
};

// Holds a Mutex (MutexLock) or a SharedMutex exclusively (WriterMutexLock)
// for its scope; Unlock()/Lock() may drop and retake it inside the scope
// (the destructor releases only if held).
template <typename M>
class SCOPED_CAPABILITY ScopedLock {
 public:
  explicit ScopedLock(M* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~ScopedLock() RELEASE() {
    if (held_) mu_->Unlock();
  }
  ScopedLock(const ScopedLock&) = delete;
  ScopedLock& operator=(const ScopedLock&) = delete;

  void Unlock() RELEASE() {
    held_ = false;
    mu_->Unlock();
  }
  void Lock() ACQUIRE() {
    mu_->Lock();
    held_ = true;
  }

 private:
  M* const mu_;
  bool held_ = true;
};
using MutexLock = ScopedLock<Mutex>;
using WriterMutexLock = ScopedLock<SharedMutex>;

// Holds a SharedMutex shared for its scope. The adopting constructor takes
// over a shared hold the caller already has (after a TryLockShared that
// succeeded).
class SCOPED_CAPABILITY ReaderMutexLock {
 public:
  explicit ReaderMutexLock(SharedMutex* mu) ACQUIRE_SHARED(mu) : mu_(mu) { mu_->ReaderLock(); }
  ReaderMutexLock(SharedMutex* mu, std::adopt_lock_t) REQUIRES_SHARED(mu) : mu_(mu) {}
  ~ReaderMutexLock() RELEASE_GENERIC() { mu_->ReaderUnlock(); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  SharedMutex* const mu_;
};

// A condition variable. Each wait names the Mutex it waits with, so the
// analysis checks that the caller holds it (REQUIRES(mu)).
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void Wait(Mutex* mu) REQUIRES(mu) {
    std::unique_lock<std::mutex> lk(mu->mu_, std::adopt_lock);
    cv_.wait(lk);
    lk.release();
  }
  // Returns false on timeout.
  template <class Rep, class Period>
  bool WaitFor(Mutex* mu, std::chrono::duration<Rep, Period> d) REQUIRES(mu) {
    return WaitUntil(mu, std::chrono::steady_clock::now() + d);
  }
  template <class Clock, class Duration>
  bool WaitUntil(Mutex* mu, std::chrono::time_point<Clock, Duration> t) REQUIRES(mu) {
    std::unique_lock<std::mutex> lk(mu->mu_, std::adopt_lock);
    const bool signalled = cv_.wait_until(lk, t) == std::cv_status::no_timeout;
    lk.release();
    return signalled;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace sharry
