//go:build openfl_pkgconfig

package openfl

// With -tags openfl_pkgconfig: the library installed by `make install`
// (pkg-config module openfl_transport; set PKG_CONFIG_PATH to
// <prefix>/lib/pkgconfig for a non-standard prefix, and LD_LIBRARY_PATH or
// an rpath for running).

// #cgo pkg-config: openfl_transport
import "C"
