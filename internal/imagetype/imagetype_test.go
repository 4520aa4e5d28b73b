package imagetype

import "testing"

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want string
		ok   bool
	}{
		{"jpeg", []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'}, JPEG, true},
		{"png", []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0}, PNG, true},
		{"json error", []byte(`{"errcode":40001,"errmsg":"invalid credential rid: 1"}`), "", false},
		{"truncated png", []byte{0x89, 'P', 'N', 'G'}, "", false},
		{"truncated jpeg", []byte{0xFF, 0xD8}, "", false},
		{"empty", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Detect(tt.body)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("Detect = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	if Ext(JPEG) != "jpg" || Ext(PNG) != "png" || Ext("text/plain") != "" {
		t.Fatal("Ext maps wrong")
	}
}
