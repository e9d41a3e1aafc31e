package watch_test

import (
	"crypto/hmac"
	"fmt"
	"strings"

	"github.com/walscribe/walscribe/watch"
)

// A webhook receiver checks the signature over the raw body before it
// trusts an alert (and refuses old timestamps: not shown).
func ExampleSign() {
	secret := []byte("0123456789abcdef0123")
	body := []byte(`{"id":"bulk_deletes:1042","watch":"bulk_deletes"}`)
	timestamp := "1711368000"
	header := "sha256=" + watch.Sign(secret, timestamp, body) // as sent in X-Walscribe-Signature

	got, _ := strings.CutPrefix(header, "sha256=")
	fmt.Println(hmac.Equal([]byte(got), []byte(watch.Sign(secret, timestamp, body))))
	fmt.Println(hmac.Equal([]byte(got), []byte(watch.Sign(secret, timestamp, []byte(`{"id":"forged"}`)))))
	// Output:
	// true
	// false
}

func ExampleProblems() {
	rules := []watch.Rule{
		{Name: "bulk_deletes", Kind: watch.Threshold, Actions: []string{"delete"}, Count: 100, Window: 500_000_000},
		{Name: "payroll", Kind: watch.OutsideHours, Tables: []string{"hr.payroll"}, TimeZone: "Europe/Berln"},
	}
	for _, p := range watch.Problems("watches", rules) {
		fmt.Println(p)
	}
	// Output:
	// watches[0].window: 500ms: use a duration from 1s to 168h, e.g. 1m, or leave the key out for 1m
	// watches[1].time_zone: "Europe/Berln" is not an IANA time zone: write one such as UTC, Europe/Berlin or America/New_York
}
