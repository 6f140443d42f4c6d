//! HUDS search: a tantivy index of public object metadata (name,
//! description, tags, mime, owner, size, time) and the text of small text
//! objects, with full-text queries, filters, sorting, pagination and
//! snippets.
//!
//! The index is a derived view, never the source of truth: it can be
//! cleared and rebuilt from the chain at any time. It lives in the node
//! (not in `ios-storage`) because tantivy runs its own indexing and merge
//! threads, which the sans-IO domain crates never do.

use std::ops::Bound;
use std::path::Path;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED,
    STRING,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

/// Longest query text accepted.
pub const MAX_QUERY_BYTES: usize = 1_024;
/// Most hits per page.
pub const MAX_LIMIT: usize = 100;
/// Deepest page start (deeper paging costs a top-k of that size).
pub const MAX_OFFSET: usize = 10_000;
/// Text of a small text object indexed at most (bytes).
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// Most tags per object, and per query.
pub const MAX_TAGS: usize = 16;
/// The writer's memory budget (tantivy needs at least 15 MB per thread).
const WRITER_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index: {0}")]
    Dir(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("search index: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = SearchError> = std::result::Result<T, E>;

/// What is indexed of one public object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectDoc {
    /// Content id, hex.
    pub cid: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub mime: String,
    /// Owner address.
    pub owner: String,
    pub size: u64,
    /// When it was stored (unix ms of its block).
    pub created: u64,
    /// The shard its deal lives on.
    pub shard: u16,
    /// The epoch its deal ends (the catalog drops it then).
    pub expires: u64,
    /// The text of a small text object (cut at [`MAX_BODY_BYTES`]).
    pub body: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    Relevance,
    Newest,
    Oldest,
    Largest,
    Smallest,
}

impl std::str::FromStr for SortBy {
    type Err = SearchError;

    fn from_str(s: &str) -> Result<SortBy> {
        Ok(match s {
            "relevance" => SortBy::Relevance,
            "newest" => SortBy::Newest,
            "oldest" => SortBy::Oldest,
            "largest" => SortBy::Largest,
            "smallest" => SortBy::Smallest,
            other => {
                return Err(SearchError::BadQuery(format!(
                    "unknown sort {other:?} (relevance, newest, oldest, largest, smallest)"
                )))
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// Words to find (tantivy's query syntax: `"a phrase"`, `-not`, `name:x`);
    /// empty matches everything.
    pub text: String,
    pub mime: Option<String>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    pub sort: SortBy,
    pub offset: usize,
    pub limit: usize,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            text: String::new(),
            mime: None,
            tags: Vec::new(),
            owner: None,
            min_size: None,
            max_size: None,
            sort: SortBy::Relevance,
            offset: 0,
            limit: 20,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub cid: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub mime: String,
    pub owner: String,
    pub size: u64,
    pub created: u64,
    /// A fragment of the description or text with matches in `<b>` (HTML-escaped).
    pub snippet: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchResults {
    /// Matches in all (not only this page).
    pub total: usize,
    pub hits: Vec<Hit>,
}

#[derive(Clone, Copy)]
struct Fields {
    cid: Field,
    /// `shard:cid`: one object's document per shard (a content id may be
    /// stored on several shards, by different owners).
    key: Field,
    name: Field,
    description: Field,
    tag_text: Field,
    tag: Field,
    mime: Field,
    owner: Field,
    size: Field,
    created: Field,
    shard: Field,
    expires: Field,
    body: Field,
}

/// An English-stemmed full-text field, with positions (phrases), stored or not.
pub(crate) fn text(stored: bool) -> TextOptions {
    let o = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    if stored {
        o.set_stored()
    } else {
        o
    }
}

/// Opens (or creates) an index of `schema` in `dir` (None: in memory).
pub(crate) fn open_index(dir: Option<&Path>, schema: Schema) -> Result<Index> {
    Ok(match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Index::open_or_create(tantivy::directory::MmapDirectory::open(dir)?, schema)?
        }
        None => Index::create_in_ram(schema),
    })
}

/// One writer thread with `bytes` of memory, and a reader reloaded by hand
/// after each commit.
pub(crate) fn writer_and_reader(index: &Index, bytes: usize) -> Result<(IndexWriter, IndexReader)> {
    let writer = index.writer_with_num_threads(1, bytes)?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    Ok((writer, reader))
}

/// The bounds every search checks: query length, page size and depth.
pub(crate) fn check_page(text: &str, limit: usize, offset: usize) -> Result<()> {
    let bad = |why: String| Err(SearchError::BadQuery(why));
    if text.len() > MAX_QUERY_BYTES {
        return bad(format!(
            "the query is {} bytes, at most {MAX_QUERY_BYTES}",
            text.len()
        ));
    }
    if limit == 0 || limit > MAX_LIMIT {
        return bad(format!("limit {limit} (from 1 to {MAX_LIMIT})"));
    }
    if offset > MAX_OFFSET {
        return bad(format!("offset {offset} (at most {MAX_OFFSET})"));
    }
    Ok(())
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        cid: b.add_text_field("cid", STRING | STORED),
        key: b.add_text_field("key", STRING),
        name: b.add_text_field("name", text(true)),
        description: b.add_text_field("description", text(true)),
        tag_text: b.add_text_field("tag_text", text(false)),
        tag: b.add_text_field("tag", STRING | STORED),
        mime: b.add_text_field("mime", STRING | STORED),
        owner: b.add_text_field("owner", STRING | STORED),
        size: b.add_u64_field("size", INDEXED | STORED | FAST),
        created: b.add_u64_field("created", INDEXED | STORED | FAST),
        shard: b.add_u64_field("shard", INDEXED),
        expires: b.add_u64_field("expires", INDEXED),
        body: b.add_text_field("body", text(true)),
    };
    (b.build(), f)
}

fn doc_key(shard: u16, cid: &str) -> String {
    format!("{shard}:{cid}")
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The search index: one writer, a reader reloaded after every commit.
pub struct SearchIndex {
    reader: SearchReader,
    writer: IndexWriter,
}

/// The searching half of a [`SearchIndex`]: cheap to clone, used from any
/// thread while the writer goes on; it sees each commit of the writer.
#[derive(Clone)]
pub struct SearchReader {
    index: Index,
    reader: IndexReader,
    f: Fields,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SearchIndex({} docs)", self.num_docs())
    }
}

impl std::fmt::Debug for SearchReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SearchReader({} docs)", self.num_docs())
    }
}

impl SearchIndex {
    /// Opens (or creates) the index in `dir`. An index of another schema
    /// (an older version) is an error: rebuild it (`ios reindex`).
    pub fn open(dir: &Path) -> Result<SearchIndex> {
        SearchIndex::at(Some(dir))
    }

    /// An index in memory (tests, benchmarks).
    pub fn in_memory() -> Result<SearchIndex> {
        SearchIndex::at(None)
    }

    fn at(dir: Option<&Path>) -> Result<SearchIndex> {
        let (schema, f) = schema();
        let index = open_index(dir, schema)?;
        let (writer, reader) = writer_and_reader(&index, WRITER_BYTES)?;
        Ok(SearchIndex {
            reader: SearchReader { index, reader, f },
            writer,
        })
    }

    /// A reader that follows this index's commits.
    pub fn reader(&self) -> SearchReader {
        self.reader.clone()
    }

    /// Documents searchable now (as of the last commit).
    pub fn num_docs(&self) -> u64 {
        self.reader.num_docs()
    }

    /// Runs a query against what was last committed.
    pub fn search(&self, q: &SearchQuery) -> Result<SearchResults> {
        self.reader.search(q)
    }

    /// Adds `doc`, replacing the document of the same content id on the
    /// same shard. Seen by
    /// searches after the next [`SearchIndex::commit`].
    pub fn upsert(&mut self, doc: &ObjectDoc) -> Result<()> {
        let f = self.reader.f;
        let key = doc_key(doc.shard, &doc.cid);
        self.writer.delete_term(Term::from_field_text(f.key, &key));
        let mut d = TantivyDocument::default();
        d.add_text(f.cid, &doc.cid);
        d.add_text(f.key, &key);
        d.add_text(f.name, &doc.name);
        d.add_text(f.description, &doc.description);
        for t in doc.tags.iter().take(MAX_TAGS) {
            d.add_text(f.tag, t);
            d.add_text(f.tag_text, t);
        }
        d.add_text(f.mime, &doc.mime);
        d.add_text(f.owner, &doc.owner);
        d.add_u64(f.size, doc.size);
        d.add_u64(f.created, doc.created);
        d.add_u64(f.shard, u64::from(doc.shard));
        d.add_u64(f.expires, doc.expires);
        if let Some(body) = &doc.body {
            d.add_text(f.body, cut(body, MAX_BODY_BYTES));
        }
        self.writer.add_document(d)?;
        Ok(())
    }

    /// Drops the document of `cid` on `shard`.
    pub fn remove(&mut self, shard: u16, cid: &str) {
        self.writer.delete_term(Term::from_field_text(
            self.reader.f.key,
            &doc_key(shard, cid),
        ));
    }

    /// Drops the documents of `shard` whose deals end by `epoch`.
    pub fn expire(&mut self, shard: u16, epoch: u64) -> Result<()> {
        let f = self.reader.f;
        let q = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.shard, u64::from(shard)),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Unbounded,
                    Bound::Included(Term::from_field_u64(f.expires, epoch)),
                )),
            ),
        ]);
        self.writer.delete_query(Box::new(q))?;
        Ok(())
    }

    /// Drops every document of `shard` (before it is read again whole).
    pub fn remove_shard(&mut self, shard: u16) {
        self.writer
            .delete_term(Term::from_field_u64(self.reader.f.shard, u64::from(shard)));
    }

    /// Drops every document (before a rebuild).
    pub fn clear(&mut self) -> Result<()> {
        self.writer.delete_all_documents()?;
        Ok(())
    }

    /// Drops what was added or removed since the last commit.
    pub fn rollback(&mut self) {
        if let Err(e) = self.writer.rollback() {
            tracing::warn!(error = %e, "search index rollback failed");
        }
    }

    /// Makes what was added or removed durable and searchable.
    pub fn commit(&mut self) -> Result<()> {
        self.writer.commit()?;
        self.reader.reader.reload()?;
        Ok(())
    }
}

impl SearchReader {
    /// Documents searchable now (as of the last commit).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn check(q: &SearchQuery) -> Result<()> {
        let bad = |why: String| Err(SearchError::BadQuery(why));
        check_page(&q.text, q.limit, q.offset)?;
        if q.tags.len() > MAX_TAGS {
            return bad(format!("{} tags (at most {MAX_TAGS})", q.tags.len()));
        }
        if let (Some(lo), Some(hi)) = (q.min_size, q.max_size) {
            if lo > hi {
                return bad(format!("min_size {lo} is over max_size {hi}"));
            }
        }
        Ok(())
    }

    fn query(&self, q: &SearchQuery) -> Box<dyn Query> {
        let f = self.f;
        let text: Box<dyn Query> = if q.text.trim().is_empty() {
            Box::new(AllQuery)
        } else {
            let mut parser = QueryParser::for_index(
                &self.index,
                vec![f.name, f.description, f.tag_text, f.body],
            );
            parser.set_conjunction_by_default();
            parser.set_field_boost(f.name, 3.0);
            parser.set_field_boost(f.tag_text, 2.0);
            // Lenient: a stray quote or colon in user input still searches.
            parser.parse_query_lenient(&q.text).0
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text)];
        let term = |field: Field, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, v),
                IndexRecordOption::Basic,
            ))
        };
        if let Some(m) = &q.mime {
            clauses.push((Occur::Must, term(f.mime, m)));
        }
        if let Some(o) = &q.owner {
            clauses.push((Occur::Must, term(f.owner, o)));
        }
        for t in &q.tags {
            clauses.push((Occur::Must, term(f.tag, t)));
        }
        if q.min_size.is_some() || q.max_size.is_some() {
            let bound = |v: Option<u64>| match v {
                Some(v) => Bound::Included(Term::from_field_u64(f.size, v)),
                None => Bound::Unbounded,
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(bound(q.min_size), bound(q.max_size))),
            ));
        }
        Box::new(BooleanQuery::new(clauses))
    }

    pub fn search(&self, q: &SearchQuery) -> Result<SearchResults> {
        SearchReader::check(q)?;
        let f = self.f;
        let searcher = self.reader.searcher();
        let query = self.query(q);
        let top = || TopDocs::with_limit(q.limit).and_offset(q.offset);
        let (addrs, total): (Vec<DocAddress>, usize) = match q.sort {
            SortBy::Relevance => {
                let (h, n) = searcher.search(&query, &(top().order_by_score(), Count))?;
                (h.into_iter().map(|(_, a)| a).collect(), n)
            }
            SortBy::Newest | SortBy::Oldest | SortBy::Largest | SortBy::Smallest => {
                let (field, order) = match q.sort {
                    SortBy::Newest => ("created", Order::Desc),
                    SortBy::Oldest => ("created", Order::Asc),
                    SortBy::Largest => ("size", Order::Desc),
                    _ => ("size", Order::Asc),
                };
                let by = top().order_by_fast_field::<u64>(field, order);
                let (h, n) = searcher.search(&query, &(by, Count))?;
                (h.into_iter().map(|(_, a)| a).collect(), n)
            }
        };
        let snippets = |field: Field| -> Result<Option<SnippetGenerator>> {
            if q.text.trim().is_empty() {
                return Ok(None);
            }
            let mut g = SnippetGenerator::create(&searcher, &*query, field)?;
            g.set_max_num_chars(160);
            Ok(Some(g))
        };
        let (desc_snippets, body_snippets) = (snippets(f.description)?, snippets(f.body)?);
        let mut hits = Vec::with_capacity(addrs.len());
        for a in addrs {
            let d: TantivyDocument = searcher.doc(a)?;
            let s = |field: Field| {
                d.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let n = |field: Field| d.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
            let mut snippet = String::new();
            for g in [&desc_snippets, &body_snippets].into_iter().flatten() {
                let sn = g.snippet_from_doc(&d);
                if !sn.highlighted().is_empty() {
                    snippet = sn.to_html();
                    break;
                }
            }
            if snippet.is_empty() {
                snippet = html_escape(cut(&s(f.description), 160));
            }
            hits.push(Hit {
                cid: s(f.cid),
                name: s(f.name),
                description: s(f.description),
                tags: d
                    .get_all(f.tag)
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                mime: s(f.mime),
                owner: s(f.owner),
                size: n(f.size),
                created: n(f.created),
                snippet,
            });
        }
        Ok(SearchResults { total, hits })
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(i: u64, name: &str, description: &str, tags: &[&str], mime: &str) -> ObjectDoc {
        ObjectDoc {
            cid: format!("{i:064x}"),
            name: name.into(),
            description: description.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            mime: mime.into(),
            owner: if i.is_multiple_of(2) {
                "ios1alice"
            } else {
                "ios1bob"
            }
            .into(),
            size: i * 1_000,
            created: 1_700_000_000_000 + i,
            shard: (i % 2) as u16 + 1,
            expires: 100 + i,
            body: None,
        }
    }

    fn index() -> SearchIndex {
        let mut ix = SearchIndex::in_memory().unwrap();
        ix.upsert(&doc(
            1,
            "Garden photos",
            "Roses and tulips in spring",
            &["photo", "garden"],
            "image/jpeg",
        ))
        .unwrap();
        ix.upsert(&doc(
            2,
            "Tax return 2025",
            "Scanned forms",
            &["finance"],
            "application/pdf",
        ))
        .unwrap();
        ix.upsert(&doc(
            3,
            "Rose pruning guide",
            "How to prune roses in winter",
            &["garden", "howto"],
            "text/plain",
        ))
        .unwrap();
        let mut text = doc(4, "notes.txt", "Meeting notes", &[], "text/plain");
        text.body =
            Some("The storage providers agreed on erasure coding with ten data fragments.".into());
        ix.upsert(&text).unwrap();
        ix.commit().unwrap();
        ix
    }

    fn cids(r: &SearchResults) -> Vec<u64> {
        r.hits
            .iter()
            .map(|h| u64::from_str_radix(&h.cid, 16).unwrap())
            .collect()
    }

    #[test]
    fn expiry_and_shard_removal_reach_readers_at_commit() {
        let mut ix = index();
        let reader = ix.reader();
        assert_eq!(reader.num_docs(), 4);
        // Shard 2 holds 1 (ends at epoch 101) and 3 (at 103); shard 1 holds 2 and 4.
        // The same content stored on shard 1 too (by someone else) is its own document.
        let mut again = doc(1, "Another name", "", &[], "image/jpeg");
        again.shard = 1;
        again.expires = 500;
        ix.upsert(&again).unwrap();
        ix.expire(2, 102).unwrap();
        assert_eq!(reader.num_docs(), 4, "nothing changes before the commit");
        ix.commit().unwrap();
        let all = reader.search(&SearchQuery::default()).unwrap();
        assert_eq!(cids(&all).len(), 4);
        assert_eq!(
            all.hits.iter().filter(|h| h.name == "Another name").count(),
            1,
            "shard 2's copy expired, shard 1's stays"
        );
        ix.remove(1, &again.cid);
        ix.commit().unwrap();
        let all = reader.search(&SearchQuery::default()).unwrap();
        assert!(
            !cids(&all).contains(&1),
            "1 gone from both shards, 2 (shard 1) stays"
        );
        ix.remove_shard(1);
        ix.commit().unwrap();
        assert_eq!(
            cids(&reader.search(&SearchQuery::default()).unwrap()),
            vec![3]
        );
    }

    #[test]
    fn full_text_finds_stems_across_fields_with_snippets() {
        let ix = index();
        let r = ix
            .search(&SearchQuery {
                text: "rose".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.total, 2, "roses / rose stem to one term");
        assert_eq!(cids(&r)[0], 3, "a match in the name ranks first");
        assert!(
            r.hits.iter().any(|h| h.snippet.contains("<b>")),
            "{:?}",
            r.hits
        );
        let r = ix
            .search(&SearchQuery {
                text: "erasure fragments".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            cids(&r),
            vec![4],
            "the text of a small text object is searched"
        );
        assert!(
            r.hits[0].snippet.contains("<b>erasure</b>"),
            "{}",
            r.hits[0].snippet
        );
        // Both words must match.
        let r = ix
            .search(&SearchQuery {
                text: "roses finance".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.total, 0);
        // Tags are searchable words too.
        let r = ix
            .search(&SearchQuery {
                text: "howto".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(cids(&r), vec![3]);
    }

    #[test]
    fn filters_sorting_and_pagination() {
        let ix = index();
        let all = |sort| SearchQuery {
            sort,
            ..Default::default()
        };
        assert_eq!(
            cids(&ix.search(&all(SortBy::Newest)).unwrap()),
            vec![4, 3, 2, 1]
        );
        assert_eq!(
            cids(&ix.search(&all(SortBy::Smallest)).unwrap()),
            vec![1, 2, 3, 4]
        );
        let q = SearchQuery {
            tags: vec!["garden".into()],
            sort: SortBy::Largest,
            ..Default::default()
        };
        assert_eq!(cids(&ix.search(&q).unwrap()), vec![3, 1]);
        let q = SearchQuery {
            mime: Some("text/plain".into()),
            owner: Some("ios1alice".into()),
            ..Default::default()
        };
        assert_eq!(cids(&ix.search(&q).unwrap()), vec![4]);
        let q = SearchQuery {
            min_size: Some(2_000),
            max_size: Some(3_000),
            sort: SortBy::Oldest,
            ..Default::default()
        };
        assert_eq!(cids(&ix.search(&q).unwrap()), vec![2, 3]);
        let page = |offset| SearchQuery {
            sort: SortBy::Oldest,
            offset,
            limit: 3,
            ..Default::default()
        };
        let p1 = ix.search(&page(0)).unwrap();
        let p2 = ix.search(&page(3)).unwrap();
        assert_eq!((p1.total, cids(&p1)), (4, vec![1, 2, 3]));
        assert_eq!((p2.total, cids(&p2)), (4, vec![4]));
    }

    #[test]
    fn upserts_replace_removals_drop_and_clear_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut ix = SearchIndex::open(dir.path()).unwrap();
            ix.upsert(&doc(1, "old name", "", &[], "text/plain"))
                .unwrap();
            ix.upsert(&doc(2, "second", "", &[], "text/plain")).unwrap();
            ix.commit().unwrap();
            ix.upsert(&doc(1, "new name", "", &[], "text/plain"))
                .unwrap();
            ix.remove(1, &format!("{:064x}", 2));
            ix.commit().unwrap();
        }
        let mut ix = SearchIndex::open(dir.path()).unwrap();
        assert_eq!(ix.num_docs(), 1, "kept across a reopen");
        let r = ix
            .search(&SearchQuery {
                text: "name".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.hits[0].name, "new name");
        ix.clear().unwrap();
        ix.commit().unwrap();
        assert_eq!(ix.num_docs(), 0);
    }

    #[test]
    fn bad_queries_are_typed_errors_and_odd_syntax_still_searches() {
        let ix = index();
        let bad = |q: SearchQuery| matches!(ix.search(&q), Err(SearchError::BadQuery(_)));
        assert!(bad(SearchQuery {
            limit: 0,
            ..Default::default()
        }));
        assert!(bad(SearchQuery {
            limit: MAX_LIMIT + 1,
            ..Default::default()
        }));
        assert!(bad(SearchQuery {
            offset: MAX_OFFSET + 1,
            ..Default::default()
        }));
        assert!(bad(SearchQuery {
            text: "x".repeat(MAX_QUERY_BYTES + 1),
            ..Default::default()
        }));
        assert!(bad(SearchQuery {
            min_size: Some(5),
            max_size: Some(4),
            ..Default::default()
        }));
        assert!("sideways".parse::<SortBy>().is_err());
        for odd in [
            "\"unclosed",
            "name:",
            "((",
            "rose AND",
            "*",
            "-",
            "<script>",
        ] {
            assert!(
                ix.search(&SearchQuery {
                    text: odd.into(),
                    ..Default::default()
                })
                .is_ok(),
                "{odd}"
            );
        }
    }
}
