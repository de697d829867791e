// Command render writes deploy/k8s/rendered/manushya.yaml: the Helm chart in
// deploy/k8s/manushya rendered with its default values, without a helm binary.
//
//	go run ./deploy/k8s/render          # from anywhere in the repository
//	go run ./deploy/k8s/render -check   # exit 1 if the file is out of date
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/manushya-ai/manushya/deploy/k8s"
)

func main() {
	check := flag.Bool("check", false, "only check that the rendered file is up to date")
	flag.Parse()
	if err := run(*check); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(check bool) error {
	root, err := k8s.FindRoot(".")
	if err != nil {
		return err
	}
	r, err := k8s.Render(filepath.Join(root, k8s.ChartDir), nil)
	if err != nil {
		return err
	}
	out := filepath.Join(root, k8s.RenderedFile)
	data := r.YAML()
	if check {
		have, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		if !bytes.Equal(have, data) {
			return fmt.Errorf("%s is out of date: run go run ./deploy/k8s/render", out)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%d objects)\n", out, len(r.All()))
	return nil
}
