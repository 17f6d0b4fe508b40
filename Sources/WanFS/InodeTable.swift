import Foundation
import WanCore
import WanSystem

/// The tree the mount shows, built from the manifest: nothing here costs network. Inode
/// numbers are stable for the life of the mount: a manifest reloaded into a new table
/// (``init(registry:reusing:)``) keeps the inode of every path whose content is the same; a
/// path gone or changed is only detached from its directory, so files open under it keep
/// working.
///
/// ```
/// /                          root (inode 1)
/// /.wanfs/status.json        live status (mount, models, in-flight fetches)
/// /<model_id>/...            the default variant's files
/// /<model_id>#<variant>/...  any other variant
/// ```
struct InodeTable: Sendable {
    enum Kind: Sendable {
        case directory
        /// A model file: the model variant's directory name, its spec, the file.
        case file(model: String, spec: ModelSpec, file: FileSpec)
        /// A generated file under `.wanfs/`.
        case control(ControlFile)
        /// A small file of fixed text (the Hugging Face view's `refs/REVISION`).
        case text(String)
    }

    struct Node: Sendable {
        let ino: UInt64
        let parent: UInt64
        let name: String
        var kind: Kind
        /// Children by name, and their names in listing order.
        var children: [String: UInt64] = [:]
        var order: [String] = []
        /// For model directories (and everything under them): the model variant.
        var model: (key: String, spec: ModelSpec)?
    }

    static let rootInode: UInt64 = 1
    static let controlDirectory = ".wanfs"
    private(set) var nodes: [Node] = []
    /// Names the previous table showed that this one does not, or shows with another inode:
    /// the entries the kernel may have cached and must drop.
    private(set) var detached: [(parent: UInt64, name: String)] = []
    /// Directories of both tables whose names changed (an entry added, removed or replaced):
    /// the listings and attributes the kernel may have cached and must drop.
    private(set) var changedDirectories: [UInt64] = []
    /// The nodes of the table this one is built over (while building).
    private var previous: [Node] = []

    /// - Parameter previous: the table of the manifest before (a reload): every path it had
    ///   with the same kind and content keeps its inode; the rest get new ones.
    init(registry: ModelRegistry, reusing previous: InodeTable? = nil) {
        if let previous {
            nodes = previous.nodes.map { node in
                var detachedNode = node
                detachedNode.children = [:]
                detachedNode.order = []
                return detachedNode
            }
            self.previous = previous.nodes
        } else {
            nodes.append(Node(ino: 1, parent: 1, name: "", kind: .directory, model: nil))
        }
        let control = add(parent: 1, name: Self.controlDirectory, kind: .directory, model: nil)
        for file in ControlFile.allCases { _ = add(parent: control, name: file.name, kind: .control(file), model: nil) }
        // Each model file's inode by model id and path: the default variant's where it has one.
        var modelFiles: [String: [String: UInt64]] = [:]
        for model in registry.manifest.models {
            for variant in model.variants.isEmpty ? [nil] : model.variants.map(Optional.some) {
                let spec = model.narrowed(to: variant)
                let key = ModelResolver.directoryName(modelID: spec.modelID, variant: spec.variant, defaultVariant: spec.defaultVariant)
                let directory = add(parent: 1, name: key, kind: .directory, model: (key, spec))
                for file in spec.files {
                    let (folder, name) = PathSplit.split(file.path)
                    let parent = self.directory(folder, under: directory, model: (key, spec))
                    let ino = add(parent: parent, name: name, kind: .file(model: key, spec: spec, file: file), model: (key, spec))
                    if variant == model.defaultVariant || modelFiles[model.modelID]?[file.path] == nil { modelFiles[model.modelID, default: [:]][file.path] = ino }
                }
            }
        }
        addHubView(registry, modelFiles: modelFiles)
        for index in nodes.indices { nodes[index].order.sort() }
        if let previous {
            for node in previous.nodes {
                for (name, ino) in node.children where nodes[Int(node.ino - 1)].children[name] != ino {
                    detached.append((node.ino, name))
                }
                if case .directory = node.kind, nodes[Int(node.ino - 1)].children != node.children { changedDirectories.append(node.ino) }
            }
        }
        self.previous = []
    }

    /// A table of nodes checked elsewhere (``init(snapshot:)``).
    init(restoring nodes: [Node]) {
        self.nodes = nodes
    }

    /// The directory at `path` (`a/b`, or empty for `base` itself) under `base`, made where missing.
    private mutating func directory(_ path: String, under base: UInt64, model: (key: String, spec: ModelSpec)?) -> UInt64 {
        var parent = base
        for segment in path.split(separator: "/").map(String.init) {
            parent = nodes[Int(parent - 1)].children[segment] ?? add(parent: parent, name: segment, kind: .directory, model: model)
        }
        return parent
    }

    /// Shows `ino` (a file of the tree) under `parent` as `name` too: the same inode.
    private mutating func link(_ ino: UInt64, as name: String, in parent: UInt64) {
        guard nodes[Int(parent - 1)].children[name] == nil else { return }
        nodes[Int(parent - 1)].children[name] = ino
        nodes[Int(parent - 1)].order.append(name)
    }

    static let hubDirectory = "hub"

    /// The Hugging Face cache view: every model with an `hf://ORG/NAME[@REVISION]` source also
    /// shows under `/hub/models--ORG--NAME/snapshots/COMMIT/`, its files the same inodes as in
    /// the model's directory, with `refs/REVISION` (`main` when none is given) naming COMMIT. So
    /// `HF_HUB_CACHE=MOUNT/hub HF_HUB_OFFLINE=1` lets `from_pretrained("ORG/NAME")` and
    /// `hf_hub_download` find the files, lazily fetched as any read through the mount. COMMIT is
    /// the revision when it is a commit id, else a stable id derived from the repo and revision.
    private mutating func addHubView(_ registry: ModelRegistry, modelFiles: [String: [String: UInt64]]) {
        var hub: UInt64?
        var repositories: [(directory: UInt64, firstCommit: String)] = []
        for model in registry.manifest.models {
            guard let files = modelFiles[model.modelID],
                  let (repo, revision) = model.sources.lazy.compactMap({ source -> (String, String?)? in
                      if case .huggingFace(let repo, let revision) = source.location { return (repo, revision) }
                      return nil
                  }).first else { continue }
            let reference = revision ?? "main"
            let commit = Self.commitID(repo: repo, revision: reference)
            let root = hub ?? directory(Self.hubDirectory, under: Self.rootInode, model: nil)
            hub = root
            let repository = directory("models--" + repo.replacingOccurrences(of: "/", with: "--"), under: root, model: nil)
            if !repositories.contains(where: { $0.directory == repository }) { repositories.append((repository, commit)) }
            let snapshots = directory("snapshots", under: repository, model: nil)
            guard nodes[Int(snapshots - 1)].children[commit] == nil else { continue }   // another model showed this revision first
            let (refFolder, refName) = PathSplit.split("refs/" + reference)
            let refs = directory(refFolder, under: repository, model: nil)
            if nodes[Int(refs - 1)].children[refName] == nil { _ = add(parent: refs, name: refName, kind: .text(commit), model: nil) }
            let snapshot = add(parent: snapshots, name: commit, kind: .directory, model: nil)
            for (path, ino) in files.sorted(by: { $0.key < $1.key }) {
                let (folder, name) = PathSplit.split(path)
                link(ino, as: name, in: directory(folder, under: snapshot, model: nil))
            }
        }
        // A repo whose sources all pin a revision still answers `from_pretrained("ORG/NAME")`:
        // `refs/main` names its first snapshot when no model names `main`.
        for (repository, commit) in repositories {
            let refs = directory("refs", under: repository, model: nil)
            if nodes[Int(refs - 1)].children["main"] == nil { _ = add(parent: refs, name: "main", kind: .text(commit), model: nil) }
        }
    }

    /// The revision when it is a commit id (40 hex digits), else 40 hex digits derived from the
    /// repo and the revision: the same on every mount and every host.
    static func commitID(repo: String, revision: String) -> String {
        if revision.count == 40, revision.allSatisfy(\.isHexDigit), revision == revision.lowercased() { return revision }
        return String(SHA256Hasher.hash(Array("wanfs:\(repo)@\(revision)".utf8)).hex.prefix(40))
    }

    /// Whether a node of the previous table can stand for `kind`: the same kind, and for a
    /// file the same content.
    private static func sameNode(_ old: Kind, _ new: Kind) -> Bool {
        switch (old, new) {
        case (.directory, .directory): true
        case let (.control(a), .control(b)): a == b
        case let (.text(a), .text(b)): a == b
        case let (.file(_, _, a), .file(_, _, b)): a.sha256 == b.sha256 && a.size == b.size
        default: false
        }
    }

    /// The previous table's node named `name` under `parent` (an inode both tables share).
    private func previousChild(of parent: UInt64, named name: String) -> Node? {
        guard previous.indices.contains(Int(parent - 1)), let ino = previous[Int(parent - 1)].children[name] else { return nil }
        return previous[Int(ino - 1)]
    }

    private mutating func add(parent: UInt64, name: String, kind: Kind, model: (key: String, spec: ModelSpec)?) -> UInt64 {
        if let old = previousChild(of: parent, named: name), Self.sameNode(old.kind, kind) {
            nodes[Int(old.ino - 1)].kind = kind
            nodes[Int(old.ino - 1)].model = model
            nodes[Int(parent - 1)].children[name] = old.ino
            nodes[Int(parent - 1)].order.append(name)
            return old.ino
        }
        let ino = UInt64(nodes.count + 1)
        nodes.append(Node(ino: ino, parent: parent, name: name, kind: kind, model: model))
        nodes[Int(parent - 1)].children[name] = ino
        nodes[Int(parent - 1)].order.append(name)
        return ino
    }

    func node(_ ino: UInt64) -> Node? {
        guard ino >= 1, ino <= UInt64(nodes.count) else { return nil }
        return nodes[Int(ino - 1)]
    }

    func child(of parent: UInt64, named name: String) -> Node? {
        node(parent)?.children[name].flatMap(node)
    }

    /// Whether `ino` is a model's top directory.
    func isModelRoot(_ ino: UInt64) -> Bool {
        guard let node = node(ino) else { return false }
        return node.parent == Self.rootInode && node.model != nil
    }
}
