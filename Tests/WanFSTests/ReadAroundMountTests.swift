import Foundation
import Testing
import WanTestSupport

/// The kernel reads around every mmap page fault. A partial load touches a small tensor (a
/// bias) right before a large one it skips; the read-around must not reach into the large
/// one's next chunk, or the load fetches chunks of tensors it never reads.
@Suite struct ReadAroundMountTests {
    @Test func aHalfLoadFetchesLittleMoreThanTheChunksOfTheTensorsItReads() throws {
        // Two blocks of Wan2.1's transformer (4.5 MiB attention weights, 26 MiB feed-forward
        // weights, a small bias before each), 2 MiB chunks.
        let (mount, _, prefix) = try MountTests.safetensorsModel("readaround", shards: 1, shardMiB: 192, chunkMiB: 2, layout: "wan")
        defer {
            try? mount.unmount()
            try? FileManager.default.removeItem(atPath: (try? TestServers.value("WAN_TEST_HTTP_ROOT")).map { $0 + "/" + prefix } ?? "")
        }
        // A root mount whose cold opens are direct I/O and whose complete files are read from
        // their blobs sets the kernel's readahead to 256 KiB; other root mounts to max_read
        // (992 KiB); a user's mount keeps the kernel's. The bound below is for the first kind
        // (this machine's and CI's kernel and user).
        let info = try mount.mountInfo()
        let faultsOnly = info["passthrough"] as? Bool == true && info["direct_io"] as? Bool == true
        guard getuid() == 0 else { return }
        let device = try #require((try FileManager.default.attributesOfItem(atPath: mount.mountpoint)[.systemNumber] as? NSNumber)?.uint64Value)
        let bdi = "/sys/class/bdi/\((device >> 8) & 0xfff):\((device & 0xff) | ((device >> 12) & 0xfff00))/read_ahead_kb"
        #expect(try String(contentsOfFile: bdi, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == (faultsOnly ? "256" : "992"))
        guard faultsOnly else { return }
        let path = mount.path("readaround@1.0", "transformer/diffusion_pytorch_model-00001-of-00001.safetensors")
        // Every other tensor in name order; prints the bytes read and the bytes of the 2 MiB
        // chunks that hold the header and those tensors (what a half load cannot do without).
        let load = """
            import json, struct, sys
            from safetensors import safe_open
            chunk = 2 << 20
            raw = open(sys.argv[1], "rb")
            length = struct.unpack("<Q", raw.read(8))[0]
            header = json.loads(raw.read(length))
            size = raw.seek(0, 2)
            base = 8 + length
            with safe_open(sys.argv[1], "np") as f:
                keys = list(f.keys())[::2]
                read = sum(f.get_tensor(k).nbytes for k in keys)
            chunks = set(range((base + chunk - 1) // chunk))
            for k in keys:
                a, b = (base + x for x in header[k]["data_offsets"])
                if b > a: chunks.update(range(a // chunk, (b - 1) // chunk + 1))
            needed = sum(min(chunk, size - c * chunk) for c in chunks)
            print(json.dumps({"read": read, "needed": needed, "size": size}))
            """
        let half = try Python.run(load, [path])
        #expect(half.status == 0, "\(half.output)")
        let result = try #require(half.json as? [String: Any])
        let read = try #require(result["read"] as? Int), needed = try #require(result["needed"] as? Int)
        let size = try #require(result["size"] as? Int)
        Thread.sleep(forTimeInterval: 2)   // whatever is fetched after close counts too
        let fetched = try TestServers.nginxBytes(containing: "/\(prefix)/transformer/diffusion_pytorch_model-00001-of-00001.safetensors")
        // The chunks it needs and at most 3 more (measured: 2, where a fault within 128 KiB of
        // a chunk's start reads back into the chunk before). With the kernel reading 992 KiB
        // around each fault, the biases' faults also fetched the skipped weights' next chunks:
        // 5 more.
        let chunk = 2 << 20
        #expect(fetched >= Int64(needed) && fetched <= Int64(needed + 3 * chunk),
                "a half load reading \(read) of \(size) bytes (in chunks: \(needed)) fetched \(fetched): \((Int(fetched) - needed) / chunk) chunks more")
    }
}
