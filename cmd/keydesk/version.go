package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

// cmdVersion prints the version and build details.
func cmdVersion(_ context.Context, args []string) error {
	{
		fs := newFlags("version", "", "Print keydesk's version and build details.")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		v := version
		info, ok := debug.ReadBuildInfo()
		if v == "" && ok {
			v = info.Main.Version
		}
		if v == "" || v == "(devel)" {
			v = "devel"
		}
		rev := ""
		if ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					rev = " " + s.Value
				}
			}
		}
		goVer := ""
		if ok {
			goVer = " " + info.GoVersion
		}
		fmt.Printf("keydesk %s%s%s\n", v, rev, goVer)
		return nil
	}
}
