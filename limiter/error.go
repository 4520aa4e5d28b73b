package limiter

import (
	"fmt"
	"time"
)

// MismatchError is returned by Wait and Check when the fleet holds an app to
// another ceiling than this Limiter's, and that state is in use: mixing two
// spacings could let more than the smaller ceiling through. Stop the workers
// of one ceiling; once the state has been unused for a window (StaleIn), the
// next Wait replaces it.
type MismatchError struct {
	// Key is the app.
	Key string
	// Limit and Margin are this Limiter's ceiling.
	Limit  Limit
	Margin time.Duration
	// FleetLimit and FleetMargin are the ceiling stored in Redis.
	FleetLimit  Limit
	FleetMargin time.Duration
	// StaleIn is how long until the stored state goes stale if no worker
	// of the fleet's ceiling uses it meanwhile.
	StaleIn time.Duration
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("limiter: app %s: this worker's ceiling %s (margin %s) differs from the fleet's %s (margin %s), in use; stale in %s if unused",
		e.Key, e.Limit, e.Margin, e.FleetLimit, e.FleetMargin, e.StaleIn.Round(time.Millisecond))
}
