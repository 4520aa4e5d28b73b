package simulator

import (
	"bytes"
	"testing"
)

func TestCacheImagesAnswersTheSameBytes(t *testing.T) {
	s, err := New(Config{CacheImages: true})
	if err != nil {
		t.Fatal(err)
	}
	req := codeRequest{api: apiUnlimited, scene: "a=1", page: "pages/x", width: 430}
	first, err := s.render(req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.render(req)
	if err != nil || !bytes.Equal(first, again) {
		t.Fatalf("cached render differs (err %v)", err)
	}
	other := req
	other.scene = "a=2"
	if o, _ := s.render(other); bytes.Equal(o, first) {
		t.Fatal("two scenes share one image")
	}
	if len(s.images) != 2 {
		t.Fatalf("cache holds %d images, want 2", len(s.images))
	}
	if _, scene, err := DecodeImage(first); err != nil || scene != "a=1" {
		t.Fatalf("cached image decodes to %q, %v", scene, err)
	}
}
