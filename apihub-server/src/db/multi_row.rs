//! Multi-row `INSERT`s for the rows written once per proxied request (a usage-log row; on SQLite
//! a ledger consume row).
//!
//! Per row, running a prepared statement costs diesel a walk of its whole query (to check it may
//! be cached, to look it up, to bind) and SQLite a statement step and reset, each about as much as
//! writing the row; one statement for [`ROWS_PER_INSERT`] rows pays them once. Such a statement is
//! prepared under a marker type ([`Prepared`](super::cached::Prepared)), so it must always have one
//! text per marker: [`slices`] cuts a batch into slices of a few sizes, one marker each.

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::query_builder::AstPass;

/// Rows in one multi-row `INSERT`: at most 64 × 23 = 1,472 parameters (the usage log's), far
/// below both databases' limits.
pub(super) const ROWS_PER_INSERT: usize = 64;

/// The sizes of [`slices`]: [`ROWS_PER_INSERT`] and the powers of two below it.
pub(super) const SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// `rows` cut into slices of [`ROWS_PER_INSERT`] rows, then the remainder into one slice each of
/// 32, 16, 8, 4, 2 and 1 rows where its binary digits say: every slice has one of [`SIZES`], and a
/// batch takes at most six statements more than its full slices (one row at a time, its
/// remainder took up to 63).
pub(super) fn slices<R>(rows: &[R]) -> impl Iterator<Item = &[R]> {
    let full = rows.len() - rows.len() % ROWS_PER_INSERT;
    let (chunks, mut rest) = rows.split_at(full);
    // The remainder's binary digits, largest first (it is below 64).
    let left = rest.len();
    let remainder = SIZES[1..].iter().filter(move |&&size| left & size != 0).map(move |&size| {
        let (slice, after) = rest.split_at(size);
        rest = after;
        slice
    });
    chunks.chunks_exact(ROWS_PER_INSERT).chain(remainder)
}

/// Runs `$run` with `$marker` the type `$insert<N>` for `N` = `$len`, one of [`SIZES`] (another
/// length is refused): the marker under which a slice of that many rows is prepared.
macro_rules! with_slice_marker {
    ($insert:ident, $len:expr, |$marker:ident| $run:expr) => {
        $crate::db::multi_row::with_slice_marker!(@sizes $insert [64 32 16 8 4 2 1] $len, $marker, $run)
    };
    (@sizes $insert:ident [$($size:literal)*] $len:expr, $marker:ident, $run:expr) => {
        match $len {
            $($size => {
                type $marker = $insert<$size>;
                $run
            })*
            len => Err(diesel::result::Error::QueryBuilderError(format!("no insert of {len} rows").into())),
        }
    };
}
pub(crate) use with_slice_marker;

/// Pushes `INSERT INTO table (columns…) VALUES (…), (…)`, one parenthesis per row of `rows`, whose
/// values `bind` pushes in `columns`' order (separated by `, `). Identifiers are quoted as diesel
/// quotes them, so one row gives exactly the text of diesel's own one-row insert.
pub(super) fn push_insert<'b, DB: Backend, R>(
    out: &mut AstPass<'_, 'b, DB>,
    table: &str,
    columns: &[&str],
    rows: &'b [R],
    mut bind: impl FnMut(&mut AstPass<'_, 'b, DB>, &'b R) -> QueryResult<()>,
) -> QueryResult<()> {
    out.push_sql("INSERT INTO ");
    out.push_identifier(table)?;
    out.push_sql(" (");
    for (at, column) in columns.iter().enumerate() {
        out.push_sql(if at == 0 { "" } else { ", " });
        out.push_identifier(column)?;
    }
    out.push_sql(") VALUES ");
    for (at, row) in rows.iter().enumerate() {
        out.push_sql(if at == 0 { "(" } else { ", (" });
        bind(out, row)?;
        out.push_sql(")");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_cut_into_slices_of_the_fixed_sizes_in_order() {
        for len in [0, 1, 2, 3, 63, 64, 65, 127, 128, 203] {
            let rows: Vec<usize> = (0..len).collect();
            let slices: Vec<&[usize]> = slices(&rows).collect();
            assert!(slices.iter().all(|slice| SIZES.contains(&slice.len())), "{len}: {slices:?}");
            assert_eq!(slices.concat(), rows, "{len}: every row once, in order");
            assert!(slices.len() <= len / ROWS_PER_INSERT + 6, "{len}: {} statements", slices.len());
        }
        let sizes: Vec<usize> = slices(&[0; 203]).map(<[_]>::len).collect();
        assert_eq!(sizes, [64, 64, 64, 8, 2, 1]);
    }

    /// A marker of `N` rows, as a table's insert declares one.
    struct Marker<const N: usize>;

    impl<const N: usize> Marker<N> {
        const ROWS: usize = N;
    }

    #[test]
    fn every_slice_size_has_a_marker_of_that_many_rows_and_no_other_size_has_one() {
        for size in SIZES {
            let rows = with_slice_marker!(Marker, size, |M| Ok::<_, diesel::result::Error>(M::ROWS));
            assert_eq!(rows.ok(), Some(size), "a slice of {size} rows");
        }
        for size in [0, 3, 63, 65, 128] {
            let rows = with_slice_marker!(Marker, size, |M| Ok::<_, diesel::result::Error>(M::ROWS));
            assert!(rows.is_err(), "no marker for {size} rows");
        }
    }
}
