from services.retriever.fusion import insert_lexical, limit_per_page, reciprocal_rank_fusion, with_page_evidence


def test_rrf_rewards_chunks_found_by_both_rankings():
    semantic = [(1, 0.9), (2, 0.8), (3, 0.7)]
    lexical = [(3, 12.0), (4, 9.0)]
    fused = reciprocal_rank_fusion([semantic, lexical], [1.0, 1.0], k=60)
    assert [chunk for chunk, _ in fused][:2] == [3, 1]
    assert {chunk for chunk, _ in fused} == {1, 2, 3, 4}


def test_rrf_with_zero_weight_keeps_the_first_ranking():
    fused = reciprocal_rank_fusion([[(1, 0.9), (2, 0.8)], [(2, 5.0), (3, 4.0)]], [1.0, 0.0], k=60)
    assert [chunk for chunk, _ in fused][:2] == [1, 2]


def test_insert_lexical_follows_the_reference_and_removes_duplicates():
    semantic = [(1, 0.9), (2, 0.8), (3, 0.7)]
    lexical = [(9, 5.0), (2, 4.0)]
    assert [c for c, _ in insert_lexical(semantic, lexical, position=1)] == [1, 9, 2, 3]


def test_limit_per_page_keeps_the_best_chunk_of_each_page():
    pages = {1: "a", 2: "a", 3: "b", 4: "a", 5: "c"}
    ranked = [(c, 1.0 / c) for c in (1, 2, 3, 4, 5)]
    assert [c for c, _ in limit_per_page(ranked, pages.__getitem__, per_page=1, k=3)] == [1, 3, 5]
    assert [c for c, _ in limit_per_page(ranked, pages.__getitem__, per_page=2, k=3)] == [1, 2, 3]
    assert [c for c, _ in limit_per_page(ranked, pages.__getitem__, per_page=0, k=4)] == [1, 2, 3, 4]


def test_page_evidence_raises_a_page_both_rankings_find_through_different_chunks():
    pages = {1: "a", 2: "b", 3: "c", 4: "c"}
    semantic = [(1, 0.9), (3, 0.8)]  # page c through chunk 3
    lexical = [(2, 9.0), (4, 8.0)]  # page c through chunk 4
    rankings, weights = [semantic, lexical], [1.0, 1.0]
    fused = reciprocal_rank_fusion(rankings, weights, k=60)
    assert [pages[c] for c, _ in limit_per_page(fused, pages.__getitem__, per_page=1, k=3)] == ["a", "b", "c"]
    raised = with_page_evidence(fused, rankings, weights, 60, pages.__getitem__, weight=0.5)
    # second in both rankings of pages: the agreement counts once pages are compared
    assert [pages[c] for c, _ in limit_per_page(raised, pages.__getitem__, per_page=1, k=3)] == ["c", "a", "b"]
    assert with_page_evidence(fused, rankings, weights, 60, pages.__getitem__, weight=0.0) == fused
