package wechat

import "fmt"

// ValidateAppID reports why s is not a Mini Program appid: "wx" and 16
// lowercase hex digits.
func ValidateAppID(s string) error {
	ok := len(s) == 18 && s[:2] == "wx"
	for i := 2; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
	}
	if !ok {
		return fmt.Errorf("appid %q: want wx and 16 hex digits, such as wx0123456789abcdef", s)
	}
	return nil
}
