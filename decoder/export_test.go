package decoder

import "github.com/walscribe/walscribe/internal/pgtest"

// SharedServer gives the external test package (decoder_test, which needs
// the catalog package and so cannot be package decoder) the server that
// TestMain started for this test binary.
func SharedServer() *pgtest.Server { return srv }
