//go:build !openfl_pkgconfig

package openfl

// Default build: the library of this repository's build tree
// (`cargo build --release` at the repository root, plus the SONAME link
// libopenfl_transport.so.0.3 that `make lib` creates), found at run time
// through an rpath. Build with -tags openfl_pkgconfig to use an installed
// copy instead (see link_pkgconfig.go).

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../target/release -lopenfl_transport -Wl,-rpath,${SRCDIR}/../../target/release
import "C"
