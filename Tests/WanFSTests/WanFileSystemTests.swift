import Foundation
import Glibc
import Testing
import WanCache
import WanCore
import WanTestSupport
@testable import WanFS

/// The filesystem logic without a kernel mount: names, attributes, reads through the cache
/// engine from a local source, extended attributes, generated status files, options, streams.
@Suite struct WanFileSystemTests {
    struct Setup {
        let dir: Scratch
        let model: ModelFixture
        let fs: WanFileSystem
    }

    static func setup(variants: Bool = false) throws -> Setup {
        let dir = try Scratch("wan-fs")
        let model = ModelFixture(modelID: "fs@1.0", sizes: [("model_index.json", 200), ("unet/w.safetensors", 3 << 20 + 17), ("unet/config.json", 50)],
                                 chunkSize: 1 << 20, seed: 3)
        try model.write(to: dir.path + "/src")
        var manifest = ModelFixture.manifest([model.manifestEntry(sources: ["local://\(dir.path)/src"])])
        if variants {
            manifest = manifest
                .replacingOccurrences(of: "path = \"unet/config.json\"", with: "path = \"unet/config.json\"\nvariant = \"fp16\"")
                .replacingOccurrences(of: "[models.\"fs@1.0\"]\n", with: "[models.\"fs@1.0\"]\nvariants = [\"fp32\", \"fp16\"]\ndefault_variant = \"fp32\"\n")
        }
        let path = try dir.write("models.toml", manifest)
        let config = try OrchestratorConfig.load(environment: ["MODELS_ROOT": dir.path + "/root"], manifestPath: path)
        let engine = try CacheEngine(config: config, registry: try ModelRegistry(manifestPath: path))
        return Setup(dir: dir, model: model, fs: WanFileSystem(engine: engine))
    }

    /// A reloaded manifest: the same paths with the same content keep their inodes, changed
    /// and removed names are detached (and reported for the kernel), new ones get new inodes,
    /// and a handle opened before keeps reading.
    @Test func aReloadKeepsTheInodesOfUnchangedPaths() throws {
        let s = try Self.setup()
        let model = try s.fs.lookup(parent: InodeTable.rootInode, name: "fs@1.0")
        let unet = try s.fs.lookup(parent: model.ino, name: "unet")
        let weights = try s.fs.lookup(parent: unet.ino, name: "w.safetensors")
        let config = try s.fs.lookup(parent: unet.ino, name: "config.json")
        let handle = try s.fs.open(config.ino, flags: O_RDONLY).handle

        // config.json changes content, model_index.json goes, a new model arrives.
        let changed = ModelFixture(modelID: "fs@1.0", sizes: [("unet/config.json", 60)], seed: 99).files[0]
        let other = ModelFixture(modelID: "new@1.0", sizes: [("a.bin", 10)], seed: 5)
        let weightsFile = s.model.file("unet/w.safetensors")
        let manifest = ModelFixture.manifest(["""
            [models."fs@1.0"]

            [[models."fs@1.0".files]]
            path = "unet/w.safetensors"
            size = \(weightsFile.size)
            sha256 = "\(weightsFile.sha256)"

            [[models."fs@1.0".files]]
            path = "unet/config.json"
            size = \(changed.size)
            sha256 = "\(changed.sha256)"

            [models."fs@1.0".sources]
            priority = ["local://\(s.dir.path)/src"]

            """, other.manifestEntry(sources: ["local://\(s.dir.path)/src"])])
        let path = try s.dir.write("models2.toml", manifest)
        let changes = s.fs.reload(try ModelRegistry(manifestPath: path))

        #expect(try s.fs.lookup(parent: InodeTable.rootInode, name: "fs@1.0").ino == model.ino)
        #expect(try s.fs.lookup(parent: model.ino, name: "unet").ino == unet.ino)
        #expect(try s.fs.lookup(parent: unet.ino, name: "w.safetensors").ino == weights.ino, "same content, same inode")
        let newConfig = try s.fs.lookup(parent: unet.ino, name: "config.json")
        #expect(newConfig.ino != config.ino && newConfig.size == 60, "changed content is a new file")
        #expect(throws: FSError.notFound) { try s.fs.lookup(parent: model.ino, name: "model_index.json") }
        #expect(try s.fs.list(InodeTable.rootInode).map(\.name).contains("new@1.0"))
        let names = Set(changes.entries.map { "\($0.parent)/\($0.name)" })
        #expect(names == ["\(unet.ino)/config.json", "\(model.ino)/model_index.json"], "\(names)")
        #expect(Set(changes.directories) == [InodeTable.rootInode, model.ino, unet.ino], "the root gained a model, the model and unet lost or replaced names")
        #expect(try s.fs.attributes(config.ino).size == 50, "the old inode still answers for what is open")
        guard case .file = try s.fs.read(handle: handle, offset: 0, size: 50) else { Issue.record("no bytes for the old handle"); return }
    }

    /// Two models of one Hub repo at two revisions: one repo directory, a snapshot each, their
    /// refs, `refs/main` for the first when no source names main, files the models' own inodes.
    @Test func theHubViewShowsEachRepoOnceWithASnapshotPerRevision() throws {
        let dir = try Scratch("wan-fs-hub")
        let one = ModelFixture(modelID: "bert@1.0", sizes: [("config.json", 40)], seed: 1)
        let two = ModelFixture(modelID: "bert@2.0", sizes: [("config.json", 50), ("sub/w.bin", 60)], seed: 2)
        let pinned = String(repeating: "ab", count: 20)
        let path = try dir.write("models.toml", ModelFixture.manifest([one.manifestEntry(sources: ["hf://org/bert@\(pinned)"]),
                                                                      two.manifestEntry(sources: ["hf://org/bert@v2"])]))
        let config = try OrchestratorConfig.load(environment: ["MODELS_ROOT": dir.path + "/root"], manifestPath: path)
        let fs = WanFileSystem(engine: try CacheEngine(config: config, registry: try ModelRegistry(manifestPath: path)))
        let hub = try fs.lookup(parent: InodeTable.rootInode, name: "hub")
        #expect(try fs.list(hub.ino).map(\.name) == ["models--org--bert"])
        let repo = try fs.lookup(parent: hub.ino, name: "models--org--bert")
        let snapshots = try fs.lookup(parent: repo.ino, name: "snapshots")
        let second = InodeTable.commitID(repo: "org/bert", revision: "v2")
        #expect(try fs.list(snapshots.ino).map(\.name) == [pinned, second].sorted())
        let refs = try fs.lookup(parent: repo.ino, name: "refs")
        func ref(_ name: String) throws -> String {
            let handle = try fs.open(try fs.lookup(parent: refs.ino, name: name).ino, flags: O_RDONLY).handle
            guard case .bytes(let bytes) = try fs.read(handle: handle, offset: 0, size: 100) else { return "" }
            return String(decoding: bytes, as: UTF8.self)
        }
        #expect(try ref(pinned) == pinned && ref("v2") == second && ref("main") == pinned)
        let viewFile = try fs.lookup(parent: try fs.lookup(parent: try fs.lookup(parent: snapshots.ino, name: second).ino, name: "sub").ino, name: "w.bin")
        let modelFile = try fs.lookup(parent: try fs.lookup(parent: try fs.lookup(parent: InodeTable.rootInode, name: "bert@2.0").ino, name: "sub").ino, name: "w.bin")
        #expect(viewFile.ino == modelFile.ino && viewFile.size == 60)
    }

    @Test func namesAndSizesComeFromTheManifestAndUnknownNamesAreENOENT() throws {
        let s = try Self.setup()
        let root = try s.fs.list(InodeTable.rootInode)
        #expect(root.map(\.name).contains("fs@1.0"))
        #expect(root.map(\.name).contains(".wanfs"))
        let model = try s.fs.lookup(parent: InodeTable.rootInode, name: "fs@1.0")
        #expect(model.isDirectory)
        let unet = try s.fs.lookup(parent: model.ino, name: "unet")
        let weights = try s.fs.lookup(parent: unet.ino, name: "w.safetensors")
        #expect(!weights.isDirectory && weights.size == 3 << 20 + 17)
        #expect(try s.fs.list(unet.ino).map(\.name) == ["config.json", "w.safetensors"])
        #expect(try s.fs.attributes(weights.ino) == weights, "inodes are stable")
        #expect(throws: FSError.self) { try s.fs.lookup(parent: model.ino, name: "missing") }
        do {
            _ = try s.fs.lookup(parent: model.ino, name: "missing")
        } catch {
            #expect(error.errno == ENOENT)
        }
        #expect(try s.fs.extendedAttribute(weights.ino, name: "user.wan.state") == "NOT_PRESENT")
        #expect(!FileManager.default.fileExists(atPath: s.dir.path + "/root/.blobs"), "names and attributes fetch nothing")
    }

    @Test func variantsAreDirectoriesOfTheirOwn() throws {
        let s = try Self.setup(variants: true)
        let names = try s.fs.list(InodeTable.rootInode).map(\.name)
        #expect(names.contains("fs@1.0"))
        #expect(names.contains("fs@1.0#fp16"))
        let plain = try s.fs.lookup(parent: try s.fs.lookup(parent: InodeTable.rootInode, name: "fs@1.0").ino, name: "unet")
        let fp16 = try s.fs.lookup(parent: try s.fs.lookup(parent: InodeTable.rootInode, name: "fs@1.0#fp16").ino, name: "unet")
        #expect(try s.fs.list(plain.ino).map(\.name) == ["w.safetensors"])
        #expect(try s.fs.list(fp16.ino).map(\.name) == ["config.json", "w.safetensors"])
    }

    @Test func readsServeExactBytesAndWritesAreEROFS() throws {
        let s = try Self.setup()
        let model = try s.fs.lookup(parent: InodeTable.rootInode, name: "fs@1.0")
        let weights = try s.fs.lookup(parent: try s.fs.lookup(parent: model.ino, name: "unet").ino, name: "w.safetensors")
        do {
            _ = try s.fs.open(weights.ino, flags: O_RDWR)
            Issue.record("open for writing succeeded")
        } catch {
            #expect(error.errno == EROFS)
        }
        let handle = try s.fs.open(weights.ino, flags: O_RDONLY)
        #expect(!handle.keepCache, "a partial file must not keep the kernel cache")
        let expected = s.model.file("unet/w.safetensors").data
        for (offset, count) in [(0, 4096), (1 << 20 - 10, 20), (3 << 20, 1 << 20)] {
            let reply = try s.fs.read(handle: handle.handle, offset: Int64(offset), size: count)
            guard case .file(let file, let at, let n) = reply else { Issue.record("expected a file reply"); continue }
            let bytes = try file.descriptor.read(count: n, at: at)
            #expect(Data(bytes) == expected[offset..<min(expected.count, offset + count)])
        }
        s.fs.release(handle: handle.handle)
        #expect(try s.fs.extendedAttribute(weights.ino, name: "user.wan.state") == "PARTIAL")
        #expect(try s.fs.extendedAttribute(weights.ino, name: "user.wan.sha256") == s.model.file("unet/w.safetensors").sha256)
        do {
            _ = try s.fs.extendedAttribute(weights.ino, name: "user.other")
            Issue.record("unknown attribute answered")
        } catch {
            #expect(error.errno == ENODATA)
        }
    }

    @Test func filesStillBeingFetchedAreOpenedForDirectIOOnlyOnceTheKernelAgrees() throws {
        let s = try Self.setup()
        let unet = try s.fs.lookup(parent: try s.fs.lookup(parent: InodeTable.rootInode, name: "fs@1.0").ino, name: "unet")
        let weights = try s.fs.lookup(parent: unet.ino, name: "w.safetensors")
        let before = try s.fs.open(weights.ino, flags: O_RDONLY)
        #expect(!before.directIO, "without FUSE_DIRECT_IO_ALLOW_MMAP a direct-I/O open could not be mmapped")
        s.fs.release(handle: before.handle)
        s.fs.directIONegotiated.store(true, ordering: .relaxed)
        let partial = try s.fs.open(weights.ino, flags: O_RDONLY)
        #expect(partial.directIO && !partial.keepCache, "a partial file skips the mount's page cache")
        let size = Int64(s.model.file("unet/w.safetensors").data.count)
        var offset: Int64 = 0
        while offset < size {
            _ = try s.fs.read(handle: partial.handle, offset: offset, size: 1 << 20)
            offset += 1 << 20
        }
        s.fs.release(handle: partial.handle)
        var state = ""
        for _ in 0..<200 {
            state = try s.fs.extendedAttribute(weights.ino, name: "user.wan.state")
            if state == "COMPLETE" { break }
            usleep(50_000)
        }
        #expect(state == "COMPLETE")
        // The link (what the xattr reads) lands a moment before the fetcher calls itself complete
        // (the history is written between them): on a loaded machine, give it that moment.
        var complete = try s.fs.open(weights.ino, flags: O_RDONLY)
        for _ in 0..<100 where complete.directIO {
            s.fs.release(handle: complete.handle)
            usleep(50_000)
            complete = try s.fs.open(weights.ino, flags: O_RDONLY)
        }
        #expect(!complete.directIO && complete.keepCache, "a complete file is cached and keeps its page cache")
        s.fs.release(handle: complete.handle)
    }

    @Test func theStatusFileIsLiveJSON() throws {
        let s = try Self.setup()
        let control = try s.fs.lookup(parent: InodeTable.rootInode, name: ".wanfs")
        let status = try s.fs.lookup(parent: control.ino, name: "status.json")
        let handle = try s.fs.open(status.ino, flags: O_RDONLY)
        #expect(handle.directIO)
        guard case .bytes(let bytes) = try s.fs.read(handle: handle.handle, offset: 0, size: 1 << 20) else {
            Issue.record("expected bytes")
            return
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let decoded = try decoder.decode(MountStatus.self, from: Data(bytes))
        #expect(decoded.models.first?.modelID == "fs@1.0")
        #expect(decoded.models.first?.state == .notPresent)
        #expect(decoded.mount.pid == getpid())
    }

    @Test func mountOptionsParseAndRejectWithTheOptionNamed() throws {
        let options = try MountOptions.parse(["/r", "/m", "-o", "manifest=/x.toml,verify=strict,allow_other,prefetch=64MiB,timeout=5,retries=1,_netdev,x-systemd.automount", "-f"])
        #expect(options.modelsRoot == "/r" && options.mountpoint == "/m")
        #expect(options.manifest == "/x.toml" && options.verify == .strict && options.allowOther && options.foreground)
        #expect(options.maxReadahead == 64 << 20 && options.timeout == 5 && options.retries == 1)
        #expect(try MountOptions.parse(["/r", "/m", "-o", "passthrough=off"]).passthrough == false)
        #expect(try MountOptions.parse(["/r", "/m"]).passthrough, "passthrough=auto by default")
        #expect(try MountOptions.parse(["/r", "/m", "-o", "direct_io=off"]).directIO == false)
        #expect(try MountOptions.parse(["/r", "/m"]).directIO, "direct_io=auto by default")
        for bad in ["verify=maybe", "passthrough=maybe", "direct_io=sometimes", "prefetch=lots", "timeout=0", "retries=99", "colour=blue", "manifest="] {
            do {
                _ = try MountOptions.parse(["/r", "/m", "-o", bad])
                Issue.record("\(bad) was accepted")
            } catch {
                #expect(error.description.contains(String(bad.prefix { $0 != "=" })), "\(bad): \(error)")
            }
        }
        #expect(throws: OrchestratorError.self) { try MountOptions.parse(["/only-one"]) }
        #expect(try MountOptions.parse(["/r", "/m", "-s", "-o", "colour=blue"]).verify == .lazy, "-s (sloppy) ignores unknown options")
    }

    /// mount.wanfs(8) is written by hand (the helper is not an argument-parser command): it must
    /// name every option the helper takes, so the package's man page cannot fall behind.
    @Test func theManPageNamesEveryMountOption() throws {
        let page = try String(contentsOfFile: TestServers.repositoryRoot + "/mount-helpers/mount.wanfs.8", encoding: .utf8)
        for option in MountOptions.known {
            let name = option.hasSuffix("=") ? String(option.dropLast()) : option
            // roff: `.BI name= VALUE`, `.BR name= a | b` or `.B name`.
            let named = page.split(separator: "\n").contains { line in
                line.hasPrefix(".B") && line.split(separator: " ").dropFirst().first.map { $0 == name || $0 == name + "=" } == true
            }
            #expect(named, "mount.wanfs.8 does not describe \(option)")
        }
        for flag in ["-f", "-n", "-v", "-s", "-o"] {
            #expect(page.contains(".B \\" + flag), "mount.wanfs.8 does not describe \(flag)")
        }
    }

    @Test func streamsGetAGrowingWindowAndRandomReadsGetNone() {
        let tracker = StreamTracker()
        let size: Int64 = 1 << 30
        #expect(tracker.access(offset: 500 << 20, length: 4096, fileSize: size, maxWindow: 256 << 20) == nil, "a first read fetches only itself")
        var offset: Int64 = 0
        var largest: Int64 = 0
        for _ in 0..<200 {
            if let ahead = tracker.access(offset: offset, length: 1 << 20, fileSize: size, maxWindow: 256 << 20) {
                #expect(ahead.lowerBound >= offset)
                largest = max(largest, ahead.upperBound - offset)
            }
            offset += 1 << 20
        }
        #expect(largest > 64 << 20 && largest <= (256 << 20) + (1 << 20), "window after 200 MiB of streaming: \(largest)")
        // Scattered page faults far apart never build a window.
        let scattered = StreamTracker()
        for i in 0..<50 {
            #expect(scattered.access(offset: Int64(i * 37 % 50) * (16 << 20), length: 4096, fileSize: size, maxWindow: 256 << 20) == nil)
        }
    }
}
