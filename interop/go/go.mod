module github.com/qtalk-rs/qtalk/interop/go

go 1.21

require github.com/progrium/qtalk-go v0.0.0-20231023224510-06b3c4414f64

require golang.org/x/net v0.14.0 // indirect
