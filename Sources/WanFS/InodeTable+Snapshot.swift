import WanCore

/// The tree as a value another daemon can rebuild (a takeover): every node with its inode,
/// including the nodes earlier reloads detached (files still open under them keep working).
/// Each model spec is written once and named by index, so a model of many files costs one
/// spec, not one per file.
extension InodeTable {
    struct Snapshot: Codable, Sendable {
        struct Node: Codable, Sendable {
            var ino: UInt64
            var parent: UInt64
            var name: String
            /// "directory", "file", "control" or "text".
            var kind: String
            /// For model directories, their files and what is under them: the model's key and spec index.
            var modelKey: String?
            var spec: Int?
            /// A file: its path in the spec. A control file: its name. A text file: its text.
            var value: String?
            var order: [String]
            var children: [String: UInt64]
        }
        var specs: [ModelSpec]
        var nodes: [Node]
    }

    struct SnapshotError: Error, CustomStringConvertible {
        let description: String
    }

    var snapshot: Snapshot {
        var specs: [ModelSpec] = []
        var index: [ModelSpec: Int] = [:]
        func number(_ spec: ModelSpec) -> Int {
            if let known = index[spec] { return known }
            specs.append(spec)
            index[spec] = specs.count - 1
            return specs.count - 1
        }
        let nodes = nodes.map { node -> Snapshot.Node in
            var out = Snapshot.Node(ino: node.ino, parent: node.parent, name: node.name, kind: "directory", modelKey: node.model?.key,
                                    spec: node.model.map { number($0.spec) }, value: nil, order: node.order, children: node.children)
            switch node.kind {
            case .directory: break
            case .file(let key, let spec, let file):
                out.kind = "file"
                out.modelKey = key
                out.spec = number(spec)
                out.value = file.path
            case .control(let control):
                out.kind = "control"
                out.value = control.rawValue
            case .text(let text):
                out.kind = "text"
                out.value = text
            }
            return out
        }
        return Snapshot(specs: specs, nodes: nodes)
    }

    /// The table of a snapshot, every reference checked (it came from another process).
    init(snapshot: Snapshot) throws(SnapshotError) {
        let count = UInt64(snapshot.nodes.count)
        guard count >= 1 else { throw SnapshotError(description: "the tree has no root") }
        func inRange(_ ino: UInt64) -> Bool { ino >= 1 && ino <= count }
        var nodes: [Node] = []
        nodes.reserveCapacity(snapshot.nodes.count)
        for (position, saved) in snapshot.nodes.enumerated() {
            guard saved.ino == UInt64(position + 1), inRange(saved.parent), saved.children.values.allSatisfy(inRange) else {
                throw SnapshotError(description: "node \(position + 1) names an inode outside the tree")
            }
            var model: (key: String, spec: ModelSpec)?
            if let key = saved.modelKey, let number = saved.spec {
                guard snapshot.specs.indices.contains(number) else { throw SnapshotError(description: "node \(saved.ino) names spec \(number) of \(snapshot.specs.count)") }
                model = (key, snapshot.specs[number])
            }
            let kind: Kind
            switch saved.kind {
            case "directory":
                kind = .directory
            case "file":
                guard let model, let path = saved.value, let file = model.spec.files.first(where: { $0.path == path }) else {
                    throw SnapshotError(description: "file node \(saved.ino) names no file of its model")
                }
                kind = .file(model: model.key, spec: model.spec, file: file)
            case "control":
                guard let control = saved.value.flatMap(ControlFile.init(rawValue:)) else { throw SnapshotError(description: "node \(saved.ino) is an unknown control file") }
                kind = .control(control)
            case "text":
                guard let text = saved.value else { throw SnapshotError(description: "text node \(saved.ino) has no text") }
                kind = .text(text)
            default:
                throw SnapshotError(description: "node \(saved.ino) has an unknown kind '\(saved.kind)'")
            }
            nodes.append(Node(ino: saved.ino, parent: saved.parent, name: saved.name, kind: kind,
                              children: saved.children, order: saved.order, model: model))
        }
        self.init(restoring: nodes)
    }
}
