// base/mutex.h: MutexLock's Unlock/Lock, CondVar's timeouts and wake-ups,
// SharedMutex's readers. No sleep decides an outcome: where a thread must be
// waiting, the test knows it is (it holds the lock the waiter released).
#include "base/mutex.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace sharry {
namespace {

using namespace std::chrono_literals;

// True if another thread can take `mu` now (TryLock on a mutex the calling
// thread holds is undefined, so a second thread asks).
bool FreeForOthers(Mutex& mu) {
  bool took = false;
  std::thread([&] {
    if (mu.TryLock()) {
      took = true;
      mu.Unlock();
    }
  }).join();
  return took;
}

TEST(MutexTest, MutexLockUnlockAndLockAgain) {
  Mutex mu;
  {
    MutexLock l(&mu);
    EXPECT_FALSE(FreeForOthers(mu));
    l.Unlock();
    EXPECT_TRUE(FreeForOthers(mu));
    l.Lock();
    EXPECT_FALSE(FreeForOthers(mu));
  }
  EXPECT_TRUE(FreeForOthers(mu));
  {
    MutexLock l(&mu);
    l.Unlock();  // the destructor must not unlock again
  }
  EXPECT_TRUE(FreeForOthers(mu));
}

struct Flag {
  Mutex mu;
  CondVar cv;
  bool waiting GUARDED_BY(mu) = false;
  bool go GUARDED_BY(mu) = false;
  bool woke GUARDED_BY(mu) = false;
};

TEST(MutexTest, WaitForReturnsFalseOnTimeoutAndHoldsTheLock) {
  Flag f;
  MutexLock l(&f.mu);
  // Nobody signals: only a spurious wake-up could return true, so a few
  // tries must see the timeout.
  bool signalled = true;
  for (int i = 0; i < 100 && signalled; ++i) signalled = f.cv.WaitFor(&f.mu, 1ms);
  EXPECT_FALSE(signalled);
  EXPECT_FALSE(FreeForOthers(f.mu));  // it returned with the lock held
}

TEST(MutexTest, WaitUntilAPastDeadlineTimesOutAtOnce) {
  Flag f;
  MutexLock l(&f.mu);
  EXPECT_FALSE(f.cv.WaitUntil(&f.mu, std::chrono::steady_clock::now() - 1s));
}

TEST(MutexTest, SignalWakesAWaiter) {
  Flag f;
  std::thread waiter([&] {
    MutexLock l(&f.mu);
    f.waiting = true;
    f.cv.SignalAll();  // tells the test it is about to wait
    while (!f.go) f.cv.Wait(&f.mu);
    f.woke = true;
  });
  {
    MutexLock l(&f.mu);
    while (!f.waiting) f.cv.Wait(&f.mu);
    // The waiter set `waiting` under mu and gives mu up only inside Wait:
    // holding mu now, we know it waits. Without the Signal it never returns.
    f.go = true;
    f.cv.Signal();
  }
  waiter.join();
  MutexLock l(&f.mu);
  EXPECT_TRUE(f.woke);
}

TEST(MutexTest, ReadersShareTheLock) {
  SharedMutex mu;
  {
    ReaderMutexLock r(&mu);
    bool second_reader = false;
    std::thread([&] {
      ReaderMutexLock r2(&mu);  // would block forever if readers excluded each other
      second_reader = true;
    }).join();
    EXPECT_TRUE(second_reader);
  }
  {
    WriterMutexLock w(&mu);
  }
  ReaderMutexLock r(&mu);  // the writer released it
}

}  // namespace
}  // namespace sharry
