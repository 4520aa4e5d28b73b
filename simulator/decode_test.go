package simulator

import "testing"

// Codes whose finder patterns the decoder's search misreads: they must
// still read back (as a scanner reads them) to their scene.
func TestDecodeHardCodes(t *testing.T) {
	for _, sc := range []string{"demo0038", "demo0298"} {
		for _, w := range []int{280, 430, 1280} {
			b, err := renderCode(codeRequest{api: apiUnlimited, scene: sc, page: "pages/index/index", width: w, checkPath: true})
			if err != nil {
				t.Fatal(err)
			}
			page, scene, err := DecodeImage(b)
			if err != nil || scene != sc || page != "pages/index/index" {
				t.Errorf("%s at %d px decodes to %q %q, %v", sc, w, page, scene, err)
			}
		}
	}
}
