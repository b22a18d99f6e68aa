// Loaded with `node --import` into a child process whose peak memory a test bounds: at exit it writes the
// process's peak resident set size in bytes (Linux VmHWM; getrusage's maxRSS elsewhere) to $PRUNELAB_PEAK_RSS_FILE.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const out = process.env.PRUNELAB_PEAK_RSS_FILE;
if (out) {
  process.on('exit', () => {
    const status = existsSync('/proc/self/status') ? readFileSync('/proc/self/status', 'utf8') : '';
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(status);
    writeFileSync(out, String(hwm ? Number(hwm[1]) * 1024 : process.resourceUsage().maxRSS * 1024));
  });
}
