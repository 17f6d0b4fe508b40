import Testing
import WanCore

@Suite struct PathSplitTests {
    @Test(arguments: [
        ("a", "", "a"), ("ab", "", "ab"), ("x/a", "x", "a"), ("x/y/model.safetensors", "x/y", "model.safetensors"),
        ("/a", "/", "a"), ("/", "/", ""), ("x/y/", "x", "y"), ("/tmp/wan/.tmp/abc.part", "/tmp/wan/.tmp", "abc.part"), ("", "", ""),
    ])
    func splitsAtTheLastSeparator(path: String, parent: String, name: String) {
        let split = PathSplit.split(path)
        #expect(split.parent == parent && split.name == name, "\(path) → \(split)")
    }
}
