package spec

import (
	"reflect"
	"strings"
	"testing"
)

func TestResolveUser(t *testing.T) {
	const passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n"
	const group = "root:x:0:\nstaff:x:50:app\napp:x:1001:\nwheel:x:10:root,app\n"
	tests := []struct {
		spec    string
		want    User
		wantErr string
	}{
		{spec: "app", want: User{UID: 1000, GID: 1001, AdditionalGids: []uint32{50, 10}, Home: "/home/app"}},
		{spec: "app:staff", want: User{UID: 1000, GID: 50, Home: "/home/app"}},
		{spec: "1000", want: User{UID: 1000, GID: 1001, AdditionalGids: []uint32{50, 10}, Home: "/home/app"}},
		{spec: "1000:0", want: User{UID: 1000, GID: 0, Home: "/home/app"}},
		{spec: "4242:4343", want: User{UID: 4242, GID: 4343}},
		{spec: "4242", want: User{UID: 4242, GID: 0}},
		{spec: "nobody", want: User{UID: 65534, GID: 65534, Home: "/nonexistent"}},
		{spec: "ghost", wantErr: `user "ghost": unable to find user ghost`},
		{spec: "app:ghosts", wantErr: `user "app:ghosts": unable to find group ghosts`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ResolveUser(tt.spec, strings.NewReader(passwd), strings.NewReader(group))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	// No passwd file in the image: numbers still work, names do not.
	if got, err := ResolveUser("7:8", nil, nil); err != nil || got.UID != 7 || got.GID != 8 {
		t.Errorf("7:8 without passwd: %+v, %v", got, err)
	}
	if _, err := ResolveUser("app", nil, nil); err == nil {
		t.Errorf("a name without passwd resolved")
	}
}
