/// A Unigram language model over pieces: the segmentation of a word is the one whose piece scores
/// (log probabilities) sum highest, found by Viterbi over a byte trie of the pieces, as the
/// `tokenizers` library does it.
struct UnigramModel: Sendable {
    private struct Node {
        var children: [UInt8: Int32] = [:]
        var pieceID: Int32 = -1
    }

    private var nodes = [Node()]
    private let scores: [Double]
    private let unknownID: Int32
    /// A character no piece covers costs this much: 10 below the lowest piece score.
    private let unknownScore: Double

    /// `pieces[id]` is the text and score of token `id`. A text given twice keeps its last id.
    init(pieces: [(text: String, score: Double)], unknownID: Int32) {
        scores = pieces.map(\.score)
        self.unknownID = unknownID
        unknownScore = (scores.min() ?? 0) - 10
        for (id, piece) in pieces.enumerated() where !piece.text.isEmpty {
            var node = 0
            for byte in piece.text.utf8 {
                if let child = nodes[node].children[byte] {
                    node = Int(child)
                } else {
                    nodes.append(Node())
                    nodes[node].children[byte] = Int32(nodes.count - 1)
                    node = nodes.count - 1
                }
            }
            nodes[node].pieceID = Int32(id)
        }
    }

    /// Ids of the best segmentation of one pre-tokenised word; runs of characters that no piece
    /// covers become a single unknown id.
    func encode(_ word: [UInt8]) -> [Int32] {
        let count = word.count
        guard count > 0 else { return [] }
        // bestScore[end], bestStart[end], bestID[end]: the best path covering word[..<end].
        var bestScore = [Double](repeating: 0, count: count + 1)
        var bestStart = [Int](repeating: -1, count: count + 1)
        var bestID = [Int32](repeating: unknownID, count: count + 1)
        bestStart[0] = 0

        var start = 0
        while start < count {
            let characterLength = min(Self.utf8Length(leadByte: word[start]), count - start)
            let scoreSoFar = bestScore[start]
            var coveredByOnePiece = false
            var node = 0
            var end = start
            while end < count, let child = nodes[node].children[word[end]] {
                node = Int(child)
                end += 1
                let id = nodes[node].pieceID
                guard id >= 0 else { continue }
                let candidate = scoreSoFar + scores[Int(id)]
                if bestStart[end] < 0 || candidate > bestScore[end] {
                    (bestScore[end], bestStart[end], bestID[end]) = (candidate, start, id)
                }
                if end - start == characterLength { coveredByOnePiece = true }
            }
            if !coveredByOnePiece {
                let end = start + characterLength
                let candidate = scoreSoFar + unknownScore
                if bestStart[end] < 0 || candidate > bestScore[end] {
                    (bestScore[end], bestStart[end], bestID[end]) = (candidate, start, unknownID)
                }
            }
            start += characterLength
        }

        var ids: [Int32] = []
        var end = count
        while end > 0, bestStart[end] >= 0, bestStart[end] < end {
            let id = bestID[end]
            if !(id == unknownID && ids.last == unknownID) { ids.append(id) }
            end = bestStart[end]
        }
        return ids.reversed()
    }

    private static func utf8Length(leadByte: UInt8) -> Int {
        switch leadByte {
        case 0xF0...: return 4
        case 0xE0...: return 3
        case 0xC0...: return 2
        default: return 1
        }
    }
}
