package parse

import (
	"time"
)

// testNow is the clock of every test: the corpus was written the day before.
var testNow = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func testOptions() Options { return ExampleOptions(testNow) }
