// Package group runs functions side by side as one: what one stopping
// means for the others is said once here.
package group

import (
	"context"
	"sync"
)

// Run runs fns side by side until ctx ends or one of them returns: then
// the others are stopped too (their context is cancelled), and Run
// returns, once all have returned, the error of the first to return.
func Run(ctx context.Context, fns ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, fn := range fns {
		wg.Go(func() {
			err := fn(ctx)
			once.Do(func() { first = err })
			cancel()
		})
	}
	wg.Wait()
	return first
}
