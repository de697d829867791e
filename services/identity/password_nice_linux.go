package identity

import "syscall"

// hashThreadNice is the scheduling priority of password-hashing threads: below
// request handling (0), so a login flood yields the CPU to everything else.
const hashThreadNice = 5

// lowerThreadPriority lowers the priority of the calling OS thread only (Linux
// applies setpriority with a thread id to that thread). Failure leaves it as is.
func lowerThreadPriority() {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), hashThreadNice)
}
