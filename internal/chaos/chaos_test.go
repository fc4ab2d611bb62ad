package chaos

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rule
	}{
		{"RCPT=451 4.7.1 Try again later", Rule{Trigger: Rcpt, Code: 451, Enhanced: "4.7.1", Text: "Try again later"}},
		{"DATA=552 5.3.4 Message too big@10%", Rule{Trigger: Data, Code: 552, Enhanced: "5.3.4", Text: "Message too big", Percent: 10}},
		{"MAIL=421", Rule{Trigger: Mail, Code: 421}},
		{"rcpt:*@fail.example=550 5.1.1 No such user", Rule{Trigger: Rcpt, Pattern: "*@fail.example", Code: 550, Enhanced: "5.1.1", Text: "No such user"}},
		{"helo=554 no enhanced code here", Rule{Trigger: Helo, Code: 554, Text: "no enhanced code here"}},
		{"CONNECT:10.0.0.0/8=554 5.7.1 Go away", Rule{Trigger: Connect, Pattern: "10.0.0.0/8", Code: 554, Enhanced: "5.7.1", Text: "Go away"}},
		{"EOD=451 4.3.0 Mail user@host.example deferred @ 12.5 %", Rule{Trigger: EndOfData, Code: 451, Enhanced: "4.3.0", Text: "Mail user@host.example deferred", Percent: 12.5}},
		{" DATA-END = 452 4.3.1 Full ", Rule{Trigger: EndOfData, Code: 452, Enhanced: "4.3.1", Text: "Full"}},
	} {
		got, err := ParseRule(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.in, got, tc.want)
		}
		// The string form reads back to the same rule.
		if again, err := ParseRule(got.String()); err != nil || again != got {
			t.Errorf("%q round trip: %q %+v %v", tc.in, got.String(), again, err)
		}
	}
}

func TestParseRuleErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"RCPT 451", `missing "="`},
		{"QUIT=421", `unknown trigger "QUIT"`},
		{"RCPT=45", "three-digit code"},
		{"RCPT=250 ok", "is not an error"},
		{"RCPT=451 5.1.1 x", "does not match the class"},
		{"RCPT=451 x@150%", "outside 0-100%"},
		{"CONNECT:10.0.0.0/33=554", "not a valid CIDR"},
	} {
		_, err := ParseRule(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.in) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
	// Every bad rule is reported, not just the first.
	_, err := ParseRules("RCPT=451\nQUIT=1\n# comment\n\nMAIL=2", "EHLO=421")
	if err == nil || !strings.Contains(err.Error(), "QUIT") || !strings.Contains(err.Error(), "MAIL=2") {
		t.Errorf("ParseRules: %v", err)
	}
	rs, err := ParseRules("RCPT=451\n# comment\n\nMAIL=421", "EHLO=550")
	if err != nil || len(rs) != 3 {
		t.Errorf("ParseRules: %v %v", rs, err)
	}
}

func TestJSON(t *testing.T) {
	rs, _ := ParseRules("RCPT:*@fail.example=550 5.1.1 No such user", "DATA=552 5.3.4 Too big@10%")
	b, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"trigger":"RCPT","pattern":"*@fail.example","code":550,"enhanced":"5.1.1","text":"No such user"},{"trigger":"DATA","code":552,"enhanced":"5.3.4","text":"Too big","percent":10}]`
	if string(b) != want {
		t.Errorf("%s", b)
	}
	var back Rules
	if err := json.Unmarshal(b, &back); err != nil || len(back) != 2 || back[0] != rs[0] || back[1] != rs[1] {
		t.Errorf("%v %v", back, err)
	}
	// The string form is accepted too; bad rules are refused with a reason.
	if err := json.Unmarshal([]byte(`["MAIL=421", {"trigger":"rcpt","code":451}]`), &back); err != nil || back[0].Trigger != Mail || back[1].Trigger != Rcpt {
		t.Errorf("%v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`[{"trigger":"RCPT","code":200}]`), &back); err == nil || !strings.Contains(err.Error(), "not an error") {
		t.Errorf("bad rule accepted: %v", err)
	}
}

func TestDecide(t *testing.T) {
	rs, _ := ParseRules("RCPT:*@fail.example=550 5.1.1 No such user", "RCPT:vip?@*=451 4.7.1 Later", "MAIL:<>=553 5.1.7 No null sender", "CONNECT:192.0.2.0/24=554 5.7.1 Go away", "EOD:*@slow.example=451 4.3.0 Queue full")
	c, err := New(rs, rand.NewPCG(1, 2))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		t        Trigger
		subjects []string
		want     string
	}{
		{Rcpt, []string{"Bob@FAIL.example"}, "550 5.1.1 No such user"},
		{Rcpt, []string{"bob@ok.example"}, ""},
		{Rcpt, []string{"vip1@x.example"}, "451 4.7.1 Later"},
		{Rcpt, []string{"vip12@x.example"}, ""},
		{Mail, []string{""}, "553 5.1.7 No null sender"},
		{Mail, []string{"a@b.example"}, ""},
		{Connect, []string{"192.0.2.7"}, "554 5.7.1 Go away"},
		{Connect, []string{"127.0.0.1"}, ""},
		{EndOfData, []string{"a@ok.example", "b@slow.example"}, "451 4.3.0 Queue full"},
		{Data, []string{"b@slow.example"}, ""},
	} {
		rep, ok := c.Decide(tc.t, tc.subjects...)
		got := ""
		if ok {
			got = rep.String()
		}
		if got != tc.want {
			t.Errorf("%s %v: %q, want %q", tc.t, tc.subjects, got, tc.want)
		}
	}
	if rep, ok := (*Chaos)(nil).Decide(Rcpt, "x"); ok {
		t.Errorf("nil chaos answered %v", rep)
	}
}

// TestProbability: over a seeded source the 10% rule fires an exact,
// reproducible number of times, and a rule that does not fire lets the
// next one answer.
func TestProbability(t *testing.T) {
	rs, _ := ParseRules("DATA=552 5.3.4 Message too big@10%", "DATA=451 4.3.0 Otherwise")
	c, _ := New(rs, rand.NewPCG(42, 1024))
	n552, n451 := 0, 0
	for i := 0; i < 10000; i++ {
		rep, ok := c.Decide(Data)
		switch {
		case !ok:
			t.Fatal("no rule answered")
		case rep.Code == 552:
			n552++
		case rep.Code == 451:
			n451++
		}
		if _, ok := c.Decide(Rcpt, "x@y"); ok { // other triggers draw nothing
			t.Fatal("RCPT answered")
		}
	}
	const want = 1050 // with PCG(42, 1024)
	if n552 != want || n451 != 10000-want {
		t.Errorf("552 answered %d times, 451 %d; want %d", n552, n451, want)
	}
}

func TestSetConcurrently(t *testing.T) {
	c, _ := New(nil, nil)
	a, _ := ParseRules("RCPT=451 4.7.1 A")
	b, _ := ParseRules("RCPT=550 5.1.1 B", "MAIL=421")
	// A rule set from the start: every decision then has an RCPT rule to
	// come from, whichever set it sees. (Checking "no rules" beside the
	// decision raced with the first Set.)
	if err := c.Set(a); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 500; j++ {
				if j%2 == 0 {
					c.Set(a)
				} else {
					c.Set(b)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 500; j++ {
				if rep, ok := c.Decide(Rcpt, "x@y"); !ok || rep.Code != 451 && rep.Code != 550 {
					t.Errorf("decide %v %v", rep, ok)
				}
			}
		}()
	}
	wg.Wait()
	if err := c.Set(Rules{{Trigger: "QUIT", Code: 421}}); err == nil {
		t.Error("bad rule set")
	}
	got := c.Rules()
	got[0].Code = 999 // a copy
	if c.Rules()[0].Code == 999 {
		t.Error("Rules returned the live slice")
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*@fail.example", "a@fail.example", true},
		{"*@fail.example", "a@fail.example.org", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*", "", true},
		{"**a**b**", "xxaxxbxx", true},
		{strings.Repeat("*a", 50) + "b", strings.Repeat("a", 5000), false},
	} {
		if got := Glob(tc.p, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}
