// SPDX-License-Identifier: MIT
// varlink_go_client: a varlink client nobody here wrote — Debian's
// golang-github-varlink-go-dev — driven against a real p2p-peerd by
// tests/peerd/test_varlink_go.py, which builds this file with the Go
// toolchain (GOPATH mode, no network).
//
//	varlink_go_client SOCKET IDLFILE
//
// Prints one line per check, "ok: ..." or "FAIL: ...", and exits 1 if any failed.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/varlink/go/varlink"
	"github.com/varlink/go/varlink/idl"
)

var failed bool

func check(ok bool, format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	if ok {
		fmt.Println("ok:", msg)
	} else {
		fmt.Println("FAIL:", msg)
		failed = true
	}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: varlink_go_client SOCKET IDLFILE")
		os.Exit(2)
	}
	file, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Println("FAIL:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := varlink.NewConnection(ctx, "unix:"+os.Args[1])
	if err != nil {
		fmt.Println("FAIL: connect:", err)
		os.Exit(1)
	}
	defer c.Close()

	var vendor, product, version, url string
	var interfaces []string
	err = c.GetInfo(ctx, &vendor, &product, &version, &url, &interfaces)
	check(err == nil, "GetInfo: %v", err)
	check(vendor == "p2p" && product == "p2p-peerd" && version != "" && url != "",
		"GetInfo vendor=%q product=%q version=%q url=%q", vendor, product, version, url)
	check(strings.Join(interfaces, ",") == "org.varlink.service,io.p2p.Peer", "GetInfo interfaces=%v", interfaces)

	desc, err := c.GetInterfaceDescription(ctx, "io.p2p.Peer")
	check(err == nil && desc == string(file), "GetInterfaceDescription(io.p2p.Peer) is the file (%v)", err)
	// This library (0.4.0) predates upper-case letters in interface names,
	// which the varlink grammar and systemd allow ("org.example.Foo"): it
	// reads the rest of the file under the name in lower case.
	parsed, err := idl.New(strings.Replace(desc, "\ninterface io.p2p.Peer\n", "\ninterface io.p2p.peer\n", 1))
	check(err == nil, "the Go library parses the io.p2p.Peer description: %v", err)
	if err == nil {
		var methods, errors []string
		for _, m := range parsed.Methods {
			methods = append(methods, m.Name)
		}
		for _, e := range parsed.Errors {
			errors = append(errors, e.Name)
		}
		check(parsed.Name == "io.p2p.peer", "interface name %q", parsed.Name)
		fmt.Println("methods:", strings.Join(methods, " "))
		fmt.Println("errors:", strings.Join(errors, " "))
	}
	desc, err = c.GetInterfaceDescription(ctx, "org.varlink.service")
	if err == nil {
		_, err = idl.New(desc)
	}
	check(err == nil, "org.varlink.service described and parsed: %v", err)
	_, err = c.GetInterfaceDescription(ctx, "io.p2p.Absent")
	_, notFound := err.(*varlink.InterfaceNotFound)
	check(notFound, "GetInterfaceDescription(io.p2p.Absent) is InterfaceNotFound: %v", err)

	// Call sends "parameters": null for a method without parameters.
	var status struct {
		Version  string  `json:"version"`
		LoggedIn *bool   `json:"logged_in"`
		Username *string `json:"username"`
		Folder   string  `json:"folder"`
	}
	err = c.Call(ctx, "io.p2p.Peer.Status", nil, &status)
	check(err == nil && status.Version == version && status.LoggedIn != nil && status.Folder != "",
		"Status: version=%q logged_in=%v folder=%q err=%v", status.Version, status.LoggedIn != nil && *status.LoggedIn,
		status.Folder, err)

	err = c.Call(ctx, "io.p2p.Peer.Search", map[string]string{"query": "x"}, nil)
	verr, isErr := err.(*varlink.Error)
	check(isErr && verr.Name == "io.p2p.Peer.NotLoggedIn", "Search while logged out: %v", err)

	err = c.Call(ctx, "io.p2p.Peer.Login", nil, nil)
	ip, isInvalid := err.(*varlink.InvalidParameter)
	check(isInvalid && ip.Parameter == "username", "Login without parameters: %v", err)

	err = c.Call(ctx, "io.p2p.Peer.Frobnicate", nil, nil)
	_, isNotFound := err.(*varlink.MethodNotFound)
	check(isNotFound, "unknown method is MethodNotFound: %v", err)

	// oneway: nothing comes back, so the next reply is the next call's.
	_, err = c.Send(ctx, "io.p2p.Peer.Frobnicate", nil, varlink.Oneway)
	check(err == nil, "oneway send: %v", err)
	receive, err := c.Send(ctx, "io.p2p.Peer.Status", nil, varlink.More)
	if err == nil {
		var flags uint64
		flags, err = receive(ctx, &status)
		check(err == nil && flags&varlink.Continues == 0 && status.Version == version,
			"Status with more: one reply without continues (flags %d, %v)", flags, err)
	} else {
		check(false, "send with more: %v", err)
	}

	upgrade, err := c.Upgrade(ctx, "io.p2p.Peer.Status", nil)
	if err == nil {
		_, _, err = upgrade(ctx, nil)
	}
	ip, isInvalid = err.(*varlink.InvalidParameter)
	check(isInvalid && ip.Parameter == "upgrade", "upgrade refused with InvalidParameter(upgrade): %v", err)
	err = c.Call(ctx, "io.p2p.Peer.Status", nil, &status)
	check(err == nil, "the connection works after the refused upgrade: %v", err)

	if failed {
		os.Exit(1)
	}
}
