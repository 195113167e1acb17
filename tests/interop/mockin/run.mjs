// Starts @hellocoop/mockin (its own server entry point, unchanged) and exits when stdin
// closes: the Rust test that started it holds the other end of the pipe, so mockin ends
// when the test ends, however it ends (a panic, a kill), and no process is left behind.
//
// PORT, IP and ISSUER are read by mockin itself (src/config.js).
process.stdin.on('end', () => process.exit(0))
process.stdin.on('close', () => process.exit(0))
process.stdin.resume()
await import('@hellocoop/mockin/src/server.js')
