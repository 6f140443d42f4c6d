//! Listing search: a tantivy index of the market's active listings (title,
//! category, the listing document's public description, price, provider
//! and its seller score, when listed), with full-text queries, a category
//! filter that matches a category and everything under it, a price range,
//! sorting by relevance, newest, price or provider score, and pagination.
//!
//! Like object search ([`crate::search`]) it is a derived view, fed by the
//! gateway's catalog from chain events and rebuilt from state at will.

use crate::search::{check_page, open_index, text, writer_and_reader, Result, SearchError};
use std::ops::Bound;
use std::path::Path;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, FAST, INDEXED, STORED, STRING};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, TantivyDocument, Term};

const WRITER_BYTES: usize = 32 << 20;

/// What is indexed of one active listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListingDoc {
    /// Listing id, hex.
    pub id: String,
    pub shard: u16,
    pub provider: String,
    pub title: String,
    pub category: String,
    /// The listing document's description, when it is a public object on
    /// the same shard.
    pub description: String,
    /// Base units.
    pub price: u64,
    pub delivery_blocks: u64,
    /// The provider's seller score (Bayesian, thousandths of a star).
    pub score_milli: u64,
    /// What the reputation sort ranks by: the score, of which the lead over
    /// the prior counts as far as global trust backs it
    /// (`crate::trust::Ranking::rank_milli`).
    pub rank_milli: u64,
    /// The provider's global trust, parts per million of the whole.
    pub trust_ppm: u64,
    pub ratings: u64,
    /// The block it was listed in.
    pub created: u64,
    pub doc: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListingSort {
    #[default]
    Relevance,
    Newest,
    PriceLow,
    PriceHigh,
    /// Best provider first: by score as global trust backs it.
    Reputation,
}

impl std::str::FromStr for ListingSort {
    type Err = SearchError;

    fn from_str(s: &str) -> Result<ListingSort> {
        Ok(match s {
            "relevance" => ListingSort::Relevance,
            "newest" => ListingSort::Newest,
            "price" | "price_low" => ListingSort::PriceLow,
            "price_high" => ListingSort::PriceHigh,
            "reputation" => ListingSort::Reputation,
            other => {
                return Err(SearchError::BadQuery(format!(
                    "unknown sort {other:?} (relevance, newest, price_low, price_high, reputation)"
                )))
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingQuery {
    pub text: String,
    /// This category or any under it (`design` matches `design/logo`).
    pub category: Option<String>,
    pub provider: Option<String>,
    pub min_price: Option<u64>,
    pub max_price: Option<u64>,
    pub sort: ListingSort,
    pub offset: usize,
    pub limit: usize,
}

impl Default for ListingQuery {
    fn default() -> Self {
        ListingQuery {
            text: String::new(),
            category: None,
            provider: None,
            min_price: None,
            max_price: None,
            sort: ListingSort::Relevance,
            offset: 0,
            limit: 20,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListingResults {
    pub total: usize,
    pub hits: Vec<ListingDoc>,
}

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    id: Field,
    shard: Field,
    provider: Field,
    title: Field,
    category: Field,
    /// The category and each of its parents, for the filter.
    category_path: Field,
    category_text: Field,
    description: Field,
    price: Field,
    delivery: Field,
    score: Field,
    rank: Field,
    trust: Field,
    ratings: Field,
    created: Field,
    doc: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        key: b.add_text_field("key", STRING),
        id: b.add_text_field("id", STRING | STORED),
        shard: b.add_u64_field("shard", INDEXED | STORED),
        provider: b.add_text_field("provider", STRING | STORED),
        title: b.add_text_field("title", text(true)),
        category: b.add_text_field("category", STRING | STORED),
        category_path: b.add_text_field("category_path", STRING),
        category_text: b.add_text_field("category_text", text(false)),
        description: b.add_text_field("description", text(true)),
        price: b.add_u64_field("price", INDEXED | STORED | FAST),
        delivery: b.add_u64_field("delivery", STORED),
        score: b.add_u64_field("score", STORED),
        rank: b.add_u64_field("rank", STORED | FAST),
        trust: b.add_u64_field("trust", STORED),
        ratings: b.add_u64_field("ratings", STORED),
        created: b.add_u64_field("created", STORED | FAST),
        doc: b.add_text_field("doc", STORED),
    };
    (b.build(), f)
}

fn key(shard: u16, id: &str) -> String {
    format!("{shard}:{id}")
}

/// The listing index: one writer, a reader reloaded after every commit.
pub struct ListingIndex {
    reader: ListingReader,
    writer: IndexWriter,
}

/// The searching half, cheap to clone.
#[derive(Clone)]
pub struct ListingReader {
    index: Index,
    reader: IndexReader,
    f: Fields,
}

impl std::fmt::Debug for ListingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListingReader({} docs)", self.num_docs())
    }
}

impl ListingIndex {
    pub fn open(dir: &Path) -> Result<ListingIndex> {
        ListingIndex::at(Some(dir))
    }

    pub fn in_memory() -> Result<ListingIndex> {
        ListingIndex::at(None)
    }

    fn at(dir: Option<&Path>) -> Result<ListingIndex> {
        let (schema, f) = schema();
        let index = open_index(dir, schema)?;
        let (writer, reader) = writer_and_reader(&index, WRITER_BYTES)?;
        Ok(ListingIndex {
            reader: ListingReader { index, reader, f },
            writer,
        })
    }

    pub fn reader(&self) -> ListingReader {
        self.reader.clone()
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.reader.searcher().num_docs()
    }

    /// Adds or replaces the listing's document.
    pub fn upsert(&mut self, l: &ListingDoc) -> Result<()> {
        let f = self.reader.f;
        let k = key(l.shard, &l.id);
        self.writer.delete_term(Term::from_field_text(f.key, &k));
        let mut d = TantivyDocument::default();
        d.add_text(f.key, &k);
        d.add_text(f.id, &l.id);
        d.add_u64(f.shard, u64::from(l.shard));
        d.add_text(f.provider, &l.provider);
        d.add_text(f.title, &l.title);
        d.add_text(f.category, &l.category);
        let mut path = String::new();
        for part in l.category.split('/') {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            d.add_text(f.category_path, &path);
            d.add_text(f.category_text, part);
        }
        d.add_text(f.description, &l.description);
        d.add_u64(f.price, l.price);
        d.add_u64(f.delivery, l.delivery_blocks);
        d.add_u64(f.score, l.score_milli);
        d.add_u64(f.rank, l.rank_milli);
        d.add_u64(f.trust, l.trust_ppm);
        d.add_u64(f.ratings, l.ratings);
        d.add_u64(f.created, l.created);
        d.add_text(f.doc, &l.doc);
        self.writer.add_document(d)?;
        Ok(())
    }

    /// Drops a listing (paused, closed).
    pub fn remove(&mut self, shard: u16, id: &str) {
        self.writer
            .delete_term(Term::from_field_text(self.reader.f.key, &key(shard, id)));
    }

    /// Drops every listing of `shard` (before it is read again whole).
    pub fn remove_shard(&mut self, shard: u16) {
        self.writer
            .delete_term(Term::from_field_u64(self.reader.f.shard, u64::from(shard)));
    }

    pub fn rollback(&mut self) {
        if let Err(e) = self.writer.rollback() {
            tracing::warn!(error = %e, "listing index rollback failed");
        }
    }

    pub fn commit(&mut self) -> Result<()> {
        self.writer.commit()?;
        self.reader.reader.reload()?;
        Ok(())
    }
}

impl ListingReader {
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn search(&self, q: &ListingQuery) -> Result<ListingResults> {
        let bad = |why: String| Err(SearchError::BadQuery(why));
        check_page(&q.text, q.limit, q.offset)?;
        if let (Some(lo), Some(hi)) = (q.min_price, q.max_price) {
            if lo > hi {
                return bad(format!("min_price {lo} is over max_price {hi}"));
            }
        }
        let f = self.f;
        let text: Box<dyn Query> = if q.text.trim().is_empty() {
            Box::new(AllQuery)
        } else {
            let mut parser =
                QueryParser::for_index(&self.index, vec![f.title, f.category_text, f.description]);
            parser.set_conjunction_by_default();
            parser.set_field_boost(f.title, 3.0);
            parser.set_field_boost(f.category_text, 2.0);
            parser.parse_query_lenient(&q.text).0
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text)];
        let term = |field: Field, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, v),
                IndexRecordOption::Basic,
            ))
        };
        if let Some(c) = &q.category {
            clauses.push((Occur::Must, term(f.category_path, c.trim_end_matches('/'))));
        }
        if let Some(p) = &q.provider {
            clauses.push((Occur::Must, term(f.provider, p)));
        }
        if q.min_price.is_some() || q.max_price.is_some() {
            let bound = |v: Option<u64>| match v {
                Some(v) => Bound::Included(Term::from_field_u64(f.price, v)),
                None => Bound::Unbounded,
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(bound(q.min_price), bound(q.max_price))),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = || TopDocs::with_limit(q.limit).and_offset(q.offset);
        let (addrs, total): (Vec<DocAddress>, usize) = match q.sort {
            ListingSort::Relevance => {
                let (h, n) = searcher.search(&query, &(top().order_by_score(), Count))?;
                (h.into_iter().map(|(_, a)| a).collect(), n)
            }
            sort => {
                let (field, order) = match sort {
                    ListingSort::Newest => ("created", Order::Desc),
                    ListingSort::PriceLow => ("price", Order::Asc),
                    ListingSort::PriceHigh => ("price", Order::Desc),
                    _ => ("rank", Order::Desc),
                };
                let by = top().order_by_fast_field::<u64>(field, order);
                let (h, n) = searcher.search(&query, &(by, Count))?;
                (h.into_iter().map(|(_, a)| a).collect(), n)
            }
        };
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
            hits.push(ListingDoc {
                id: s(f.id),
                shard: n(f.shard) as u16,
                provider: s(f.provider),
                title: s(f.title),
                category: s(f.category),
                description: s(f.description),
                price: n(f.price),
                delivery_blocks: n(f.delivery),
                score_milli: n(f.score),
                rank_milli: n(f.rank),
                trust_ppm: n(f.trust),
                ratings: n(f.ratings),
                created: n(f.created),
                doc: s(f.doc),
            });
        }
        Ok(ListingResults { total, hits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(i: u64, title: &str, category: &str, price: u64, score: u64) -> ListingDoc {
        ListingDoc {
            id: format!("{i:064x}"),
            shard: 1,
            provider: format!("p{}", i % 2),
            title: title.into(),
            category: category.into(),
            description: format!("{title} by hand"),
            price,
            delivery_blocks: 10,
            score_milli: score,
            rank_milli: score,
            trust_ppm: 0,
            ratings: 1,
            created: i,
            doc: String::new(),
        }
    }

    fn ids(r: &ListingResults) -> Vec<String> {
        r.hits.iter().map(|h| h.id[60..].to_string()).collect()
    }

    #[test]
    fn listings_are_found_filtered_and_sorted() {
        let mut ix = ListingIndex::in_memory().unwrap();
        ix.upsert(&doc(1, "Logo design in a day", "design/logo", 500, 4_500))
            .unwrap();
        ix.upsert(&doc(2, "Website design", "design/web", 2_000, 3_900))
            .unwrap();
        ix.upsert(&doc(
            3,
            "Translate a contract",
            "writing/translation",
            800,
            4_800,
        ))
        .unwrap();
        ix.upsert(&doc(4, "Logos for bands", "design/logo", 300, 3_100))
            .unwrap();
        ix.commit().unwrap();
        let r = ix.reader();
        let q = |f: &dyn Fn(&mut ListingQuery)| {
            let mut q = ListingQuery::default();
            f(&mut q);
            r.search(&q).unwrap()
        };
        // Stemmed words across title and category.
        let logo = q(&|q| q.text = "logo".into());
        assert_eq!(logo.total, 2);
        // A category matches everything under it.
        let design = q(&|q| {
            q.category = Some("design".into());
            q.sort = ListingSort::PriceLow;
        });
        assert_eq!(ids(&design), vec!["0004", "0001", "0002"]);
        assert_eq!(q(&|q| q.category = Some("design/logo".into())).total, 2);
        assert_eq!(q(&|q| q.category = Some("desi".into())).total, 0);
        // Price range, reputation and newest first, paging.
        let mid = q(&|q| {
            q.min_price = Some(400);
            q.max_price = Some(1_000);
            q.sort = ListingSort::Reputation;
        });
        assert_eq!(ids(&mid), vec!["0003", "0001"]);
        // The reputation sort ranks by trust-backed rank, not the raw score:
        // a 4.9-star provider nobody trusts ranks below a trusted 4.5.
        let mut untrusted = doc(5, "Logo from a ring", "design/logo", 600, 4_900);
        untrusted.rank_milli = 3_190;
        ix.upsert(&untrusted).unwrap();
        ix.commit().unwrap();
        let mid = q(&|q| {
            q.min_price = Some(400);
            q.max_price = Some(1_000);
            q.sort = ListingSort::Reputation;
        });
        assert_eq!(ids(&mid), vec!["0003", "0001", "0005"]);
        assert_eq!(mid.hits[2].score_milli, 4_900);
        ix.remove(1, &format!("{:064x}", 5));
        ix.commit().unwrap();
        let newest = q(&|q| {
            q.sort = ListingSort::Newest;
            q.limit = 2;
            q.offset = 1;
        });
        assert_eq!(newest.total, 4);
        assert_eq!(ids(&newest), vec!["0003", "0002"]);
        // Upsert replaces, remove drops.
        ix.upsert(&doc(4, "Logos for bands", "design/logo", 900, 3_100))
            .unwrap();
        ix.remove(1, &format!("{:064x}", 2));
        ix.commit().unwrap();
        let all = r.search(&ListingQuery::default()).unwrap();
        assert_eq!(all.total, 3);
        assert!(all.hits.iter().any(|h| h.price == 900));
        // Bad queries are typed errors.
        for bad in [
            ListingQuery {
                limit: 0,
                ..Default::default()
            },
            ListingQuery {
                min_price: Some(5),
                max_price: Some(1),
                ..Default::default()
            },
            ListingQuery {
                text: "x".repeat(crate::search::MAX_QUERY_BYTES + 1),
                ..Default::default()
            },
        ] {
            assert!(matches!(r.search(&bad), Err(SearchError::BadQuery(_))));
        }
        assert!("sideways".parse::<ListingSort>().is_err());
    }
}
