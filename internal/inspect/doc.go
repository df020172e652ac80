// Package inspect describes a checkpoint directory: what app it holds and with which command,
// when and where it was taken (host, kernel, CPU, crwrap and CRIU versions from crwrap.json),
// the size of each part, the process tree and memory read from the CRIU images with go-criu's
// crit, and CRIU's dump statistics.
//
// It is also a damage check: files missing or of another size than crwrap.json lists, CRIU
// images cut short or unparsable, and pages images smaller or larger than their pagemaps say
// make the report Damaged, with one reason each. Inspect never stops at the first problem, so
// the report shows everything that could still be read.
package inspect
