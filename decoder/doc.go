// Package decoder turns pgoutput messages into audit entries. It is pure: no I/O.
package decoder
