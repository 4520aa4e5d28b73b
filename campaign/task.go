package campaign

import (
	"encoding/json"
	"fmt"
)

// TaskType is the asynq task type of a batch of scenes.
const TaskType = "wxacode:batch"

// Priorities of campaigns, from the most urgent.
var Priorities = []string{"high", "default", "low"}

// PriorityWeights are the weights workers give an app's queues by default:
// a small urgent campaign is not stuck behind a huge one.
var PriorityWeights = map[string]int{"high": 6, "default": 3, "low": 1}

// queuePrefix starts every queue name of batches.
const queuePrefix = "wxacode-"

// QueueFor names the queue of an app's campaigns of a priority (high,
// default or "", low): "wxacode-APPID-PRIORITY". Each app has queues of
// its own, so a worker pulls only batches of apps it serves.
func QueueFor(appid, priority string) (string, error) {
	switch priority {
	case "":
		priority = "default"
	case "high", "default", "low":
	default:
		return "", fmt.Errorf("priority %q: want high, default or low", priority)
	}
	return queuePrefix + appid + "-" + priority, nil
}

// Queues are the queues of an app with their weights, from weights by
// priority (nil: PriorityWeights); a priority of weight 0 or absent is
// not served.
func Queues(appid string, weights map[string]int) map[string]int {
	if weights == nil {
		weights = PriorityWeights
	}
	out := make(map[string]int, len(weights))
	for p, w := range weights {
		if q, err := QueueFor(appid, p); err == nil && w > 0 {
			out[q] = w
		}
	}
	return out
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
