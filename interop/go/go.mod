module github.com/qtalk-rs/qtalk/interop/go

go 1.26.0

require (
	github.com/progrium/qtalk-go v0.0.0-20231023224510-06b3c4414f64
	github.com/progrium/qtalk-go/x/cbor v0.0.0-20231023224510-06b3c4414f64
	github.com/quic-go/quic-go v0.65.0
)

require (
	github.com/fxamacker/cbor/v2 v2.4.0 // indirect
	github.com/mitchellh/mapstructure v1.4.3 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	golang.org/x/crypto v0.54.0 // indirect
	golang.org/x/net v0.56.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)

// x/cbor's go.mod requires qtalk-go v0.5.1-0.20230305191028-54c22354090f, an
// older commit whose pseudo-version sorts higher than our pin; minimal version
// selection would pick it over v0.0.0-20231023224510-06b3c4414f64. Excluding it
// drops that requirement, so the pinned commit is what gets built.
exclude github.com/progrium/qtalk-go v0.5.1-0.20230305191028-54c22354090f
