//go:build !linux

package testenv

import "syscall"

func childAttr() *syscall.SysProcAttr { return nil }

func groupAlive(pgid int) bool { return false }

func tcpListening(port int) (listening, known bool) { return false, false }
