//! One batch of appends and acks as one MySQL transaction.
//!
//! The hot path (`hot.rs`) hands over everything that was queued, in
//! arrival order; [`run`] does the work of all of it in a fixed number of
//! statements, whatever the batch holds, because on a local database each
//! statement's round trip costs about as much as the row work itself:
//!
//! 1. Resolve each append's target to its conversation: one read of the
//!    senders' friendships, one of their group memberships. A sender who may
//!    not write there is refused here, before anything is written, so a
//!    refused append costs its neighbours nothing.
//! 2. Lock the conversations that will take numbers, in id order, with one
//!    `SELECT ... FOR UPDATE`, which also reads their `last_seq`. Every node
//!    locks in the same order, so two batches that share conversations wait
//!    for each other instead of deadlocking; and whatever another node
//!    commits to those conversations is now committed or waits for us.
//! 3. Resends: look the `(sender, client_msg_id)`s up at once, but only when
//!    the caller asks (see below) and for refused appends (a resend is
//!    answered with its original even if it could not be sent now). Read
//!    after the locks, this sees a resend that another node committed while
//!    we waited.
//! 4. Number the new messages in memory, in arrival order per conversation
//!    (so each sender's messages keep their order), and write them with one
//!    multi-row `INSERT` (their `last_seq` is written in step 7).
//! 5. Read the members of the group conversations the answers need.
//! 6. Acks last: lock the member rows (in key order) and move the positions
//!    in memory. Last, because from here on the batch waits for no other
//!    lock, so holding member rows cannot close a cycle with another batch.
//! 7. Write `last_seq` and the positions that moved, and `COMMIT`: three
//!    statements in one round trip. They carry only numbers, which are
//!    written into the text; anything a user typed is only ever bound.
//!
//! Resends are rare (a client repeats a send only after losing its
//! connection), and the lookup is the costliest statement of a batch, so a
//! batch first runs without it: the unique key on `(sender,
//! client_msg_id)` catches a resend at the `INSERT`, and the batch is run
//! again with the lookup.
//!
//! A refusal is an outcome of its item, not an error of the batch; an
//! `Err` means the database failed and the caller rolls the whole batch
//! back. A duplicate key on the `INSERT` is such an error (see
//! [`is_resend`]); run again with `look_up_resends`, step 3 finds the
//! original.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chat_proto::{ChatMessage, ConversationId, Seq, Target, UserId};
use sqlx::mysql::{MySql, MySqlConnection};
use sqlx::{Executor as _, QueryBuilder};

use crate::error::{Result, StoreError};
use crate::repo::{Appended, NewMessage};
use crate::rows::{from_db, target_to_db, to_db, MessageRow};

/// A stored message with its sender's name, for lookups by an `OR` of keys.
/// The name comes from a subquery rather than a join: with one table in the
/// `FROM`, the optimiser can only read the key ranges, while a join lets it
/// pick a plan that re-runs the range analysis for every row of the other
/// table, which it did here (ten times the CPU per batch) whenever InnoDB's
/// statistics lagged behind a table growing fast.
const SELECT_STORED: &str = "SELECT m.conversation_id, m.seq, m.sender_id, \
     (SELECT u.name FROM users u WHERE u.id = m.sender_id) AS sender_name, \
     m.target_kind, m.target_id, m.client_msg_id, m.body, m.server_ts_ms FROM messages m";

/// One write of a batch.
pub(super) enum Item<'a> {
    /// Store a message.
    Append(&'a NewMessage),
    /// Move `user`'s acknowledged position in `conversation` to `seq`.
    Ack {
        user: UserId,
        conversation: ConversationId,
        seq: Seq,
    },
}

/// What an item came to, once its batch commits.
pub(super) enum Outcome {
    /// The answer to an append.
    Appended(Result<Appended>),
    /// The answer to an ack.
    Acked(Result<Seq>),
}

/// Where an append goes, as far as step 1 can tell.
enum Route {
    /// The conversation it may write to.
    Conversation(i64),
    /// It may not write (or the target does not exist).
    Refused(StoreError),
}

/// What an append comes to before the answers get their recipients.
enum Slot {
    /// A new message.
    Fresh(ChatMessage),
    /// A resend: the original.
    Duplicate(ChatMessage),
    /// An append that may not be stored.
    Refused(StoreError),
    /// An ack's result.
    Acked(Result<Seq>),
}

/// Does the work of `items` in a transaction on `conn` (which must not be in
/// autocommit mode), commits it, and returns each one's outcome, in order.
/// With `look_up_resends` false, a resend of a stored message fails the
/// batch with a duplicate key (see [`is_resend`]), to be run again with it
/// true.
///
/// # Errors
/// A database error; the caller must then roll the transaction back.
pub(super) async fn run(
    conn: &mut MySqlConnection,
    items: &[Item<'_>],
    look_up_resends: bool,
) -> Result<Vec<Outcome>> {
    let appends: Vec<&NewMessage> = items
        .iter()
        .filter_map(|item| match item {
            Item::Append(message) => Some(*message),
            Item::Ack { .. } => None,
        })
        .collect();
    let routes = route(conn, &appends).await?;
    let locked: BTreeSet<i64> = routes
        .iter()
        .filter_map(|route| match route {
            Route::Conversation(id) => Some(*id),
            Route::Refused(_) => None,
        })
        .collect();
    let mut last_seq = lock_conversations(conn, &locked).await?;
    let look_up: Vec<&NewMessage> = appends
        .iter()
        .zip(&routes)
        .filter(|(_, route)| look_up_resends || matches!(route, Route::Refused(_)))
        .map(|(message, _)| *message)
        .collect();
    let mut originals = stored(conn, &look_up).await?;

    // Number the new messages in arrival order. A second append of one
    // (sender, client_msg_id) in the same batch is a resend of the first.
    let mut slots = Vec::with_capacity(items.len());
    let mut routes = routes.into_iter();
    let mut fresh_rows: Vec<(&NewMessage, i64, i64)> = Vec::new();
    let mut touched: BTreeMap<i64, i64> = BTreeMap::new();
    for item in items {
        let Item::Append(message) = item else {
            // Acks are done after the appends; their slot is filled then.
            slots.push(Slot::Acked(Ok(Seq::ZERO)));
            continue;
        };
        let route = routes
            .next()
            .unwrap_or(Route::Refused(StoreError::NotFound("target")));
        let key = (to_db(message.sender_id.0), message.client_msg_id.clone());
        if let Some(original) = originals.get(&key) {
            slots.push(Slot::Duplicate(original.clone()));
            continue;
        }
        let conversation = match route {
            Route::Refused(refusal) => {
                slots.push(Slot::Refused(refusal));
                continue;
            }
            Route::Conversation(conversation) => conversation,
        };
        let Some(last) = last_seq.get_mut(&conversation) else {
            // The row disappeared between steps 1 and 2; nothing in the
            // schema deletes conversations, so this is a broken database.
            slots.push(Slot::Refused(StoreError::NotFound("conversation")));
            continue;
        };
        *last += 1;
        let seq = *last;
        touched.insert(conversation, seq);
        fresh_rows.push((message, conversation, seq));
        let stored = ChatMessage {
            conversation_id: ConversationId(from_db(conversation)),
            seq: Seq(from_db(seq)),
            sender_id: message.sender_id,
            sender_name: message.sender_name.clone(),
            target: message.target,
            client_msg_id: message.client_msg_id.clone(),
            body: message.body.clone(),
            server_ts_ms: message.now_ms,
        };
        originals.insert(key, stored.clone());
        slots.push(Slot::Fresh(stored));
    }
    insert_messages(conn, &fresh_rows).await?;

    let groups: BTreeSet<i64> = slots
        .iter()
        .filter_map(|slot| match slot {
            Slot::Fresh(message) | Slot::Duplicate(message) => match message.target {
                Target::Group(_) => Some(to_db(message.conversation_id.0)),
                Target::User(_) => None,
            },
            _ => None,
        })
        .collect();
    let members = group_members(conn, &groups).await?;

    let acks: Vec<(usize, UserId, ConversationId, Seq)> = items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| match item {
            Item::Ack {
                user,
                conversation,
                seq,
            } => Some((index, *user, *conversation, *seq)),
            Item::Append(_) => None,
        })
        .collect();
    let (acked, ack_update) = ack_all(conn, &acks, &last_seq).await?;
    for (index, result) in acked {
        slots[index] = Slot::Acked(result);
    }

    // The last writes carry only numbers, so they go as text together with
    // the COMMIT: one round trip for all three.
    let finish: Vec<String> = [advance_conversations(&touched), ack_update]
        .into_iter()
        .flatten()
        .chain(["COMMIT".to_owned()])
        .collect();
    // Without arguments, sqlx sends the text as is (the text protocol, which
    // takes several statements).
    conn.execute(finish.join("; ").as_str()).await?;

    Ok(slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Fresh(message) => Outcome::Appended(Ok(answer(message, false, &members))),
            Slot::Duplicate(message) => Outcome::Appended(Ok(answer(message, true, &members))),
            Slot::Refused(refusal) => Outcome::Appended(Err(refusal)),
            Slot::Acked(result) => Outcome::Acked(result),
        })
        .collect())
}

/// An append's answer with everyone the message is for: a pair's
/// conversation has exactly the pair as members; a group's were read in
/// step 5.
fn answer(message: ChatMessage, duplicate: bool, members: &HashMap<i64, Vec<UserId>>) -> Appended {
    let recipients = match message.target {
        Target::User(to) => {
            let mut pair = vec![message.sender_id, to];
            pair.sort_unstable();
            pair
        }
        Target::Group(_) => members
            .get(&to_db(message.conversation_id.0))
            .cloned()
            .unwrap_or_default(),
    };
    Appended {
        message,
        duplicate,
        recipients,
    }
}

/// Step 1: the conversation each append may write to, or why not.
async fn route(conn: &mut MySqlConnection, appends: &[&NewMessage]) -> Result<Vec<Route>> {
    let mut direct = BTreeSet::new();
    let mut group = BTreeSet::new();
    for message in appends {
        let sender = to_db(message.sender_id.0);
        match message.target {
            Target::User(to) => direct.insert((sender, to_db(to.0))),
            Target::Group(id) => group.insert((sender, to_db(id.0))),
        };
    }
    let friends: HashMap<(i64, i64), i64> = if direct.is_empty() {
        HashMap::new()
    } else {
        let mut query = QueryBuilder::<MySql>::new(
            "SELECT user_id, friend_id, conversation_id FROM friends WHERE ",
        );
        push_pairs(&mut query, "user_id", "friend_id", &direct);
        let rows: Vec<(i64, i64, i64)> = query.build_query_as().fetch_all(&mut *conn).await?;
        rows.into_iter()
            .map(|(user, friend, conversation)| ((user, friend), conversation))
            .collect()
    };
    let memberships: HashMap<(i64, i64), i64> = if group.is_empty() {
        HashMap::new()
    } else {
        // A subquery, not a join, for the reason given at SELECT_STORED.
        let mut query = QueryBuilder::<MySql>::new(
            "SELECT m.user_id, m.group_id, \
             (SELECT g.conversation_id FROM chat_groups g WHERE g.id = m.group_id) \
             FROM group_members m WHERE ",
        );
        let by_group: BTreeSet<(i64, i64)> = group.iter().map(|&(s, g)| (g, s)).collect();
        push_pairs(&mut query, "m.group_id", "m.user_id", &by_group);
        let rows: Vec<(i64, i64, i64)> = query.build_query_as().fetch_all(&mut *conn).await?;
        rows.into_iter()
            .map(|(user, group, conversation)| ((user, group), conversation))
            .collect()
    };
    let mut routes = Vec::with_capacity(appends.len());
    let mut unresolved = false;
    for message in appends {
        let sender = to_db(message.sender_id.0);
        let found = match message.target {
            Target::User(to) => friends.get(&(sender, to_db(to.0))),
            Target::Group(id) => memberships.get(&(sender, to_db(id.0))),
        };
        routes.push(match found {
            Some(&conversation) => Route::Conversation(conversation),
            None => {
                unresolved = true;
                Route::Refused(StoreError::Forbidden("not allowed"))
            }
        });
    }
    if unresolved {
        explain_refusals(conn, appends, &mut routes).await?;
    }
    Ok(routes)
}

/// Tells a refused append whose target exists (`Forbidden`) from one whose
/// target does not (`NotFound`). Refusals are rare, so this costs a read
/// only in batches that have one.
async fn explain_refusals(
    conn: &mut MySqlConnection,
    appends: &[&NewMessage],
    routes: &mut [Route],
) -> Result<()> {
    let mut users = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for (message, route) in appends.iter().zip(routes.iter()) {
        if let Route::Refused(_) = route {
            match message.target {
                Target::User(to) => users.insert(to_db(to.0)),
                Target::Group(id) => groups.insert(to_db(id.0)),
            };
        }
    }
    let existing_users = existing(conn, "users", &users).await?;
    let existing_groups = existing(conn, "chat_groups", &groups).await?;
    for (message, route) in appends.iter().zip(routes.iter_mut()) {
        if let Route::Refused(refusal) = route {
            *refusal = match message.target {
                Target::User(to) if existing_users.contains(&to_db(to.0)) => {
                    StoreError::Forbidden("not friends")
                }
                Target::User(_) => StoreError::NotFound("user"),
                Target::Group(id) if existing_groups.contains(&to_db(id.0)) => {
                    StoreError::Forbidden("not a member of the group")
                }
                Target::Group(_) => StoreError::NotFound("group"),
            };
        }
    }
    Ok(())
}

/// Which of `ids` exist in `table` (`users` or `chat_groups`).
async fn existing(
    conn: &mut MySqlConnection,
    table: &'static str,
    ids: &BTreeSet<i64>,
) -> Result<BTreeSet<i64>> {
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut query = QueryBuilder::<MySql>::new(format!("SELECT id FROM {table} WHERE id IN "));
    push_list(&mut query, ids);
    let found: Vec<i64> = query.build_query_scalar().fetch_all(&mut *conn).await?;
    Ok(found.into_iter().collect())
}

/// Step 2: locks `conversations` in id order until commit and returns their
/// `last_seq`.
async fn lock_conversations(
    conn: &mut MySqlConnection,
    conversations: &BTreeSet<i64>,
) -> Result<BTreeMap<i64, i64>> {
    if conversations.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut query =
        QueryBuilder::<MySql>::new("SELECT id, last_seq FROM conversations WHERE id IN ");
    push_list(&mut query, conversations);
    query.push(" ORDER BY id FOR UPDATE");
    let rows: Vec<(i64, i64)> = query.build_query_as().fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().collect())
}

/// Step 3: the stored messages of the appends' `(sender, client_msg_id)`s.
async fn stored(
    conn: &mut MySqlConnection,
    appends: &[&NewMessage],
) -> Result<HashMap<(i64, String), ChatMessage>> {
    let keys: BTreeSet<(i64, &str)> = appends
        .iter()
        .map(|message| (to_db(message.sender_id.0), message.client_msg_id.as_str()))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let mut query = QueryBuilder::<MySql>::new(format!("{SELECT_STORED} WHERE "));
    for (index, (sender, client_msg_id)) in keys.iter().enumerate() {
        if index > 0 {
            query.push(" OR ");
        }
        query.push("(m.sender_id = ");
        query.push_bind(*sender);
        query.push(" AND m.client_msg_id = ");
        query.push_bind(*client_msg_id);
        query.push(")");
    }
    let rows: Vec<MessageRow> = query.build_query_as().fetch_all(&mut *conn).await?;
    let mut originals = HashMap::with_capacity(rows.len());
    for row in rows {
        let message = row.into_message()?;
        let key = (to_db(message.sender_id.0), message.client_msg_id.clone());
        originals.insert(key, message);
    }
    Ok(originals)
}

/// Step 4: the new messages, in one statement.
async fn insert_messages(
    conn: &mut MySqlConnection,
    rows: &[(&NewMessage, i64, i64)],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<MySql>::new(
        "INSERT INTO messages (conversation_id, seq, sender_id, target_kind, target_id, \
         client_msg_id, body, server_ts_ms) ",
    );
    query.push_values(rows, |mut row, (message, conversation, seq)| {
        let (target_kind, target_id) = target_to_db(message.target);
        row.push_bind(*conversation)
            .push_bind(*seq)
            .push_bind(to_db(message.sender_id.0))
            .push_bind(target_kind)
            .push_bind(target_id)
            .push_bind(message.client_msg_id.as_str())
            .push_bind(message.body.as_str())
            .push_bind(message.now_ms);
    });
    query.build().execute(&mut *conn).await?;
    Ok(())
}

/// Step 4: the statement that sets each numbered conversation's new
/// `last_seq`, if any (numbers only, written out as text).
fn advance_conversations(last_seq: &BTreeMap<i64, i64>) -> Option<String> {
    if last_seq.is_empty() {
        return None;
    }
    let mut sql = "UPDATE conversations SET last_seq = CASE id".to_owned();
    for (conversation, seq) in last_seq {
        sql.push_str(&format!(" WHEN {conversation} THEN {seq}"));
    }
    sql.push_str(" END WHERE id IN (");
    sql.push_str(&join_numbers(last_seq.keys()));
    sql.push(')');
    Some(sql)
}

/// `1, 2, 3`.
fn join_numbers<'a>(numbers: impl IntoIterator<Item = &'a i64>) -> String {
    numbers
        .into_iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Step 5: the members of `conversations`, each list ordered by id.
async fn group_members(
    conn: &mut MySqlConnection,
    conversations: &BTreeSet<i64>,
) -> Result<HashMap<i64, Vec<UserId>>> {
    let mut members: HashMap<i64, Vec<UserId>> = HashMap::new();
    if conversations.is_empty() {
        return Ok(members);
    }
    let mut query = QueryBuilder::<MySql>::new(
        "SELECT conversation_id, user_id FROM conversation_members WHERE conversation_id IN ",
    );
    push_list(&mut query, conversations);
    query.push(" ORDER BY conversation_id, user_id");
    let rows: Vec<(i64, i64)> = query.build_query_as().fetch_all(&mut *conn).await?;
    for (conversation, user) in rows {
        members
            .entry(conversation)
            .or_default()
            .push(UserId(from_db(user)));
    }
    Ok(members)
}

/// Step 6: moves each ack's position forward (never back, never past its
/// conversation's end, which for a conversation locked in step 2 includes
/// this batch's messages) and returns each ack's result by item index, with
/// the statement that writes the positions that moved (numbers only,
/// written out as text), if any.
async fn ack_all(
    conn: &mut MySqlConnection,
    acks: &[(usize, UserId, ConversationId, Seq)],
    locked_last_seq: &BTreeMap<i64, i64>,
) -> Result<(Vec<(usize, Result<Seq>)>, Option<String>)> {
    if acks.is_empty() {
        return Ok((Vec::new(), None));
    }
    // A plain read of the end is enough to clamp where the conversation is
    // not locked: it only grows, so a value a moment old is still a
    // position that exists. Not locking it keeps acks from queueing behind
    // other nodes' appends.
    let unlocked: BTreeSet<i64> = acks
        .iter()
        .map(|(_, _, conversation, _)| to_db(conversation.0))
        .filter(|conversation| !locked_last_seq.contains_key(conversation))
        .collect();
    let mut ends = locked_last_seq.clone();
    if !unlocked.is_empty() {
        let mut query =
            QueryBuilder::<MySql>::new("SELECT id, last_seq FROM conversations WHERE id IN ");
        push_list(&mut query, &unlocked);
        let rows: Vec<(i64, i64)> = query.build_query_as().fetch_all(&mut *conn).await?;
        ends.extend(rows);
    }
    let rows: BTreeSet<(i64, i64)> = acks
        .iter()
        .map(|(_, user, conversation, _)| (to_db(conversation.0), to_db(user.0)))
        .collect();
    let mut query = QueryBuilder::<MySql>::new(
        "SELECT conversation_id, user_id, acked_seq FROM conversation_members WHERE ",
    );
    push_pairs(&mut query, "conversation_id", "user_id", &rows);
    query.push(" ORDER BY conversation_id, user_id FOR UPDATE");
    let found: Vec<(i64, i64, i64)> = query.build_query_as().fetch_all(&mut *conn).await?;
    let mut positions: BTreeMap<(i64, i64), (i64, bool)> = found
        .into_iter()
        .map(|(conversation, user, acked)| ((conversation, user), (acked, false)))
        .collect();
    let mut results = Vec::with_capacity(acks.len());
    for &(index, user, conversation, seq) in acks {
        let key = (to_db(conversation.0), to_db(user.0));
        let result = match (positions.get_mut(&key), ends.get(&key.0)) {
            (Some((acked, changed)), Some(&end)) => {
                let target = to_db(seq.0).min(end);
                if target > *acked {
                    *acked = target;
                    *changed = true;
                }
                Ok(Seq(from_db(*acked)))
            }
            _ => Err(StoreError::Forbidden("not a member of the conversation")),
        };
        results.push((index, result));
    }
    let changed: Vec<((i64, i64), i64)> = positions
        .into_iter()
        .filter(|(_, (_, changed))| *changed)
        .map(|(key, (acked, _))| (key, acked))
        .collect();
    if changed.is_empty() {
        return Ok((results, None));
    }
    let mut sql = "UPDATE conversation_members SET acked_seq = CASE".to_owned();
    for ((conversation, user), acked) in &changed {
        sql.push_str(&format!(
            " WHEN conversation_id = {conversation} AND user_id = {user} THEN {acked}"
        ));
    }
    sql.push_str(" ELSE acked_seq END WHERE ");
    let keys: Vec<String> = changed
        .iter()
        .map(|((conversation, user), _)| {
            format!("(conversation_id = {conversation} AND user_id = {user})")
        })
        .collect();
    sql.push_str(&keys.join(" OR "));
    Ok((results, Some(sql)))
}

/// Appends `(?, ?, ...)` with `values` bound.
fn push_list<'a>(query: &mut QueryBuilder<'_, MySql>, values: impl IntoIterator<Item = &'a i64>) {
    query.push("(");
    let mut separated = query.separated(", ");
    for value in values {
        separated.push_bind(*value);
    }
    query.push(")");
}

/// Appends `(a = ? AND b = ?) OR ...` for `pairs`: point lookups on a
/// two-column key, which the range optimiser reads as one index range each.
fn push_pairs(query: &mut QueryBuilder<'_, MySql>, a: &str, b: &str, pairs: &BTreeSet<(i64, i64)>) {
    for (index, (first, second)) in pairs.iter().enumerate() {
        if index > 0 {
            query.push(" OR ");
        }
        query.push(format!("({a} = "));
        query.push_bind(*first);
        query.push(format!(" AND {b} = "));
        query.push_bind(*second);
        query.push(")");
    }
}

/// Whether a failed batch met a stored `(sender, client_msg_id)` at its
/// `INSERT`: a resend, to be answered by running the batch again with
/// `look_up_resends`.
pub(super) fn is_resend(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(error) if crate::rows::is_unique_violation(error))
}
