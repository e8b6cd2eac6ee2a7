package openfl

// Hooks for the external tests (package openfl_test).

var LibraryCodeName = libraryCodeName

// SetBorrowLimits changes which upload tensors are lent in place; it
// returns a function restoring the defaults.
func SetBorrowLimits(minBytes, maxTensors int) (restore func()) {
	oldMin, oldMax := borrowMinBytes, borrowMaxTensors
	borrowMinBytes, borrowMaxTensors = minBytes, maxTensors
	return func() { borrowMinBytes, borrowMaxTensors = oldMin, oldMax }
}

// LiveServerStates is the number of server logic handles the library holds.
func LiveServerStates() int64 { return liveServerStates.Load() }

// LiveDirectorStates is the number of director hook handles the library holds.
func LiveDirectorStates() int64 { return liveDirectorStates.Load() }

// CallsInProgress is the number of calls using a client's library handle
// (an *AggregatorClient, *EnvoyClient or *FrontendClient).
func CallsInProgress(client any) int {
	switch c := client.(type) {
	case *AggregatorClient:
		return c.core.callsInProgress()
	case *EnvoyClient:
		return c.core.callsInProgress()
	case *FrontendClient:
		return c.core.callsInProgress()
	}
	panic("CallsInProgress: not a client")
}
