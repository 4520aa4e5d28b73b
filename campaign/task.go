package campaign

import (
	"encoding/json"
	"fmt"
)

// TaskType is the asynq task type of a batch of scenes.
const TaskType = "wxacode:batch"

// Queues, by priority. Workers serve them with the weights of QueueWeights,
// so a small urgent campaign is not stuck behind a huge one.
const (
	QueueHigh    = "wxacode-high"
	QueueDefault = "wxacode-default"
	QueueLow     = "wxacode-low"
)

// QueueWeights are the weights workers give the queues by default.
var QueueWeights = map[string]int{QueueHigh: 6, QueueDefault: 3, QueueLow: 1}

// QueueFor maps a priority (high, default, low) to its queue.
func QueueFor(priority string) (string, error) {
	switch priority {
	case "high":
		return QueueHigh, nil
	case "", "default":
		return QueueDefault, nil
	case "low":
		return QueueLow, nil
	}
	return "", fmt.Errorf("priority %q: want high, default or low", priority)
}

// BatchTask is the payload of a batch task. It names the batch; the scenes
// and settings stay in the campaign record, so payloads are tiny and carry
// no secret.
type BatchTask struct {
	Campaign string `json:"c"`
	Batch    int    `json:"b"`
	// Retry is the `retry` run that enqueued the task, 0 for enqueue.
	Retry int `json:"r,omitempty"`
}

// ID is the task's asynq ID: from campaign, batch and retry run, so that
// enqueueing the same batch again is refused by asynq, not run twice.
func (t BatchTask) ID() string {
	if t.Retry > 0 {
		return fmt.Sprintf("%s/b%d/r%d", t.Campaign, t.Batch, t.Retry)
	}
	return fmt.Sprintf("%s/b%d", t.Campaign, t.Batch)
}

// Marshal encodes the payload.
func (t BatchTask) Marshal() []byte {
	b, _ := json.Marshal(t) // a struct of strings and ints always encodes
	return b
}

// ParseBatchTask decodes a payload.
func ParseBatchTask(payload []byte) (BatchTask, error) {
	var t BatchTask
	if err := json.Unmarshal(payload, &t); err != nil {
		return t, fmt.Errorf("batch task payload: %w", err)
	}
	if err := ValidateName(t.Campaign); err != nil || t.Batch < 0 {
		return t, fmt.Errorf("batch task payload %q: bad campaign or batch", payload)
	}
	return t, nil
}
