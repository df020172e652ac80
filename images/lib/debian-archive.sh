# shellcheck shell=bash
# debian-archive.sh — sourced by images/criu/bundle.sh and images/base/make.sh (bash).
#
# debian_archive prints the Debian archive URI debootstrap should download from: $DEBIAN_MIRROR
# when set, else the one this host's apt uses, read from /etc/apt/sources.list and
# /etc/apt/sources.list.d/*.list (one-line format) and *.sources (deb822), in apt's order. The
# archive is the first "deb" source with component main whose suite is the host's codename
# (/etc/os-release VERSION_CODENAME) or stable, oldstable, testing, unstable or sid: security,
# updates and third-party sources are skipped. APT_ETC and OS_RELEASE name other files (tests).
debian_archive() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then
		echo "${DEBIAN_MIRROR%/}"
		return 0
	fi
	local etc=${APT_ETC:-/etc/apt} osr=${OS_RELEASE:-/etc/os-release} codename="" f uri suite
	local -a files=()
	# shellcheck disable=SC1090
	codename=$(. "$osr" 2>/dev/null && echo "${VERSION_CODENAME:-}") || codename=""
	[ -f "$etc/sources.list" ] && files+=("$etc/sources.list")
	for f in "$etc"/sources.list.d/*; do
		case $f in *.list | *.sources) [ -f "$f" ] && files+=("$f") ;; esac
	done
	while read -r uri suite; do
		case " ${codename:-.} stable oldstable testing unstable sid " in
		*" $suite "*)
			echo "${uri%/}"
			return 0
			;;
		esac
	done < <(for f in "${files[@]}"; do debian_archive_sources "$f"; done)
	echo "no Debian archive (a deb source of component main for ${codename:-this release}) in $etc/sources.list or $etc/sources.list.d/; set DEBIAN_MIRROR to one" >&2
	return 1
}

# debian_archive_sources FILE prints "URI SUITE" for each deb source of component main in FILE.
debian_archive_sources() {
	case $1 in
	*.sources)
		# deb822: stanzas separated by blank lines; "Field: value", continued on indented lines.
		awk '
			function flush(  i, j, nu, ns, nc, u, s, c, deb, main) {
				if (enabled != "no") {
					deb = 0; main = 0
					nu = split(f["types"], u, /[ \t]+/); for (i = 1; i <= nu; i++) if (u[i] == "deb") deb = 1
					nc = split(f["components"], c, /[ \t]+/); for (i = 1; i <= nc; i++) if (c[i] == "main") main = 1
					if (deb && main) {
						nu = split(f["uris"], u, /[ \t]+/); ns = split(f["suites"], s, /[ \t]+/)
						for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) if (u[i] != "" && s[j] != "") print u[i], s[j]
					}
				}
				delete f; key = ""; enabled = ""
			}
			/^#/ { next }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]/ { if (key != "") f[key] = f[key] " " $0; next }
			{
				i = index($0, ":"); if (!i) next
				key = tolower(substr($0, 1, i - 1)); v = substr($0, i + 1)
				gsub(/^[ \t]+|[ \t]+$/, "", v); f[key] = v
				if (key == "enabled") enabled = tolower(v)
			}
			END { flush() }
		' "$1"
		;;
	*)
		# One-line: deb [options] URI SUITE COMPONENT...
		awk '
			{ sub(/#.*/, ""); gsub(/\[[^]]*\]/, "") }
			$1 == "deb" && NF >= 4 { for (i = 4; i <= NF; i++) if ($i == "main") { print $2, $3; break } }
		' "$1"
		;;
	esac
}
