// js-libp2p 3.x calls Promise.withResolvers (Node 22+). Node 20 lacks it, so
// this file is preloaded with `node --import ./polyfill.mjs peer.mjs ...`.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve
      let reject
      const promise = new this((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}
