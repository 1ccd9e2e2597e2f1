//! One batch of appends and acks as one MySQL transaction.
//!
//! The hot path (`hot.rs`) hands over everything that was queued, in
//! arrival order; [`run`] does the work of all of it in a fixed number of
//! round trips, whatever the batch holds, because on a local database each
//! round trip (two thread wake-ups, a statement's fixed cost) costs more
//! than the row work itself. In the usual case there are three:
//!
//! 1. Under lock, one multi-statement read: lock the conversations that will
//!    take numbers, in id order, with `SELECT ... FOR UPDATE` (which also
//!    reads their `last_seq`); check that each sender may still write to
//!    them (friends, or a member of the group); read the members of the
//!    group conversations; lock and read the member rows that acks move.
//!    Every node locks in the same order, so two batches that share
//!    conversations wait for each other instead of deadlocking; and
//!    whatever another node commits to those conversations is now committed
//!    or waits for us.
//! 2. Number the new messages in memory, in arrival order per conversation
//!    (so each sender's messages keep their order), and insert them with one
//!    multi-row `INSERT`.
//! 3. Write `last_seq` and the positions acks moved, and `COMMIT`: three
//!    statements, one round trip.
//!
//! Which conversation a sender's target is comes from a [`RouteCache`]
//! (it never changes: a pair keeps its conversation, a group has one); step
//! 1 checks the right to write again anyway. A target the cache does not
//! know costs one read before step 1. A sender who may not write is refused
//! there, before anything is written, so a refused append costs its
//! neighbours nothing.
//!
//! Resends are rare (a client repeats a send only after losing its
//! connection) and looking them up is the costliest statement, so a batch
//! first runs without: the unique key on `(sender, client_msg_id)` catches a
//! resend at the `INSERT`, and the batch is run again with
//! `look_up_resends`, which reads them after step 1 (seeing a resend that
//! another node committed while we waited for the locks). Refused appends
//! are always looked up: a resend is answered with its original even when it
//! could not be sent now.
//!
//! The statements of steps 1 and 3 carry only numbers (ids and sequence
//! numbers), which are written into their text, so that several can share a
//! round trip; anything a user typed is only ever bound.
//!
//! A refusal is an outcome of its item, not an error of the batch; an
//! `Err` means the database failed and the caller rolls the whole batch
//! back. A duplicate key on the `INSERT` is such an error (see
//! [`is_resend`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use chat_proto::{ChatMessage, ConversationId, Seq, Target, UserId};
use sqlx::mysql::{MySql, MySqlConnection};
use sqlx::{Executor as _, QueryBuilder, Row as _};

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
     m.target_kind, m.target_id, m.client_msg_id, m.body, m.server_ts_ms, \
     m.recalled_by, m.recalled_at_ms FROM messages m";

/// Which conversation each (sender, target) writes to, as last read. Owned
/// by the hot-path task. A conversation id never changes for a pair or a
/// group, so an entry is never wrong about the conversation; whether the
/// sender may still write there is checked in every batch.
#[derive(Debug, Default)]
pub(super) struct RouteCache {
    known: HashMap<(UserId, Target), i64>,
}

impl RouteCache {
    /// Entries kept at most; past that the cache starts again empty (each
    /// active sender costs one read to come back).
    const MAX_ENTRIES: usize = 1 << 16;

    fn get(&self, message: &NewMessage) -> Option<i64> {
        self.known
            .get(&(message.sender_id, message.target))
            .copied()
    }

    fn remember(&mut self, message: &NewMessage, conversation: i64) {
        if self.known.len() >= Self::MAX_ENTRIES {
            self.known.clear();
        }
        self.known
            .insert((message.sender_id, message.target), conversation);
    }

    fn forget(&mut self, message: &NewMessage) {
        self.known.remove(&(message.sender_id, message.target));
    }
}

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

/// Where an append goes.
enum Route {
    /// The conversation it writes to, and whether that came from the cache
    /// (and is still to be checked in step 1).
    Conversation { id: i64, cached: bool },
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
    cache: &mut RouteCache,
) -> Result<Vec<Outcome>> {
    let appends: Vec<&NewMessage> = items
        .iter()
        .filter_map(|item| match item {
            Item::Append(message) => Some(*message),
            Item::Ack { .. } => None,
        })
        .collect();
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

    let mut routes = route(conn, &appends, cache).await?;
    let under_lock = read_under_lock(conn, &appends, &routes, &acks).await?;
    let mut refused = false;
    for (message, route) in appends.iter().zip(routes.iter_mut()) {
        let Route::Conversation { id, cached: true } = *route else {
            refused |= matches!(route, Route::Refused(_));
            continue;
        };
        match under_lock.route_of(message) {
            Some(now) if now == id => {}
            Some(_) => {
                // A conversation id does not change; if it did, start over
                // without the cache.
                cache.forget(message);
                return Err(StoreError::Engine(
                    "a conversation changed its id; retrying".to_owned(),
                ));
            }
            None => {
                cache.forget(message);
                *route = Route::Refused(StoreError::Forbidden("not allowed"));
                refused = true;
            }
        }
    }
    if refused {
        explain_refusals(conn, &appends, &mut routes).await?;
    }
    let look_up: Vec<&NewMessage> = appends
        .iter()
        .zip(&routes)
        .filter(|(_, route)| look_up_resends || matches!(route, Route::Refused(_)))
        .map(|(message, _)| *message)
        .collect();
    let mut originals = stored(conn, &look_up).await?;

    // Step 2: number the new messages in arrival order. A second append of
    // one (sender, client_msg_id) in the same batch is a resend of the first.
    let mut last_seq = under_lock.last_seq;
    let mut slots = Vec::with_capacity(items.len());
    let mut routes = routes.into_iter();
    let mut fresh_rows: Vec<(&NewMessage, i64, i64)> = Vec::new();
    let mut touched: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut readers: BTreeMap<(i64, i64), i64> = BTreeMap::new();
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
            Route::Conversation { id, .. } => id,
        };
        let Some(last) = last_seq.get_mut(&conversation) else {
            // Nothing in the schema deletes a conversation that a friendship
            // or a group still names; this is a broken database.
            slots.push(Slot::Refused(StoreError::NotFound("conversation")));
            continue;
        };
        *last += 1;
        let seq = *last;
        touched.insert(conversation, (seq, message.now_ms));
        readers.insert((conversation, to_db(message.sender_id.0)), seq);
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
            recalled: None,
        };
        originals.insert(key, stored.clone());
        slots.push(Slot::Fresh(stored));
    }
    insert_messages(conn, &fresh_rows).await?;

    // Resends of group messages whose members step 1 did not read.
    let mut members = under_lock.members;
    let missing: BTreeSet<i64> = slots
        .iter()
        .filter_map(|slot| match slot {
            Slot::Duplicate(message) if matches!(message.target, Target::Group(_)) => {
                Some(to_db(message.conversation_id.0))
            }
            _ => None,
        })
        .filter(|conversation| !members.contains_key(conversation))
        .collect();
    members.extend(group_members(conn, &missing).await?);

    // Acks, clamped to their conversation's end: for one locked in step 1
    // that includes this batch's messages.
    let mut ends = under_lock.ack_ends;
    ends.extend(last_seq.iter().map(|(id, last)| (*id, *last)));
    let (acked, ack_update) = ack_all(&acks, &ends, under_lock.ack_rows);
    for (index, result) in acked {
        slots[index] = Slot::Acked(result);
    }

    // Step 3.
    let mut finish: Vec<String> = [
        advance_conversations(&touched),
        advance_readers(&readers),
        ack_update,
    ]
    .into_iter()
    .flatten()
    .collect();
    finish.push("COMMIT".to_owned());
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

/// Whether a failed batch met a stored `(sender, client_msg_id)` at its
/// `INSERT`: a resend, to be answered by running the batch again with
/// `look_up_resends`.
pub(super) fn is_resend(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(error) if crate::rows::is_unique_violation(error))
}

/// An append's answer with everyone the message is for: a pair's
/// conversation has exactly the pair as members; a group's were read under
/// lock.
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

/// The conversation of each append: from the cache (to be checked under
/// lock), else read now (one round trip for all the unknown ones).
async fn route(
    conn: &mut MySqlConnection,
    appends: &[&NewMessage],
    cache: &mut RouteCache,
) -> Result<Vec<Route>> {
    let unknown: Vec<&NewMessage> = appends
        .iter()
        .filter(|message| cache.get(message).is_none())
        .copied()
        .collect();
    let mut read = Reads::default();
    if !unknown.is_empty() {
        let mut sql = Statements::default();
        sql.routes(&unknown);
        read = sql.run(conn).await?;
    }
    Ok(appends
        .iter()
        .map(|message| match cache.get(message) {
            Some(id) => Route::Conversation { id, cached: true },
            None => match read.route_of(message) {
                Some(id) => {
                    cache.remember(message, id);
                    Route::Conversation { id, cached: false }
                }
                None => Route::Refused(StoreError::Forbidden("not allowed")),
            },
        })
        .collect())
}

/// Step 1, in one round trip: locks and reads what the batch needs held
/// until it commits.
async fn read_under_lock(
    conn: &mut MySqlConnection,
    appends: &[&NewMessage],
    routes: &[Route],
    acks: &[(usize, UserId, ConversationId, Seq)],
) -> Result<Reads> {
    let mut locked = BTreeSet::new();
    let mut groups = BTreeSet::new();
    let mut to_check = Vec::new();
    for (message, route) in appends.iter().zip(routes) {
        if let Route::Conversation { id, cached } = *route {
            locked.insert(id);
            if matches!(message.target, Target::Group(_)) {
                groups.insert(id);
            }
            if cached {
                to_check.push(*message);
            }
        }
    }
    let mut sql = Statements::default();
    // The locks first: everything after reads what they protect.
    sql.lock(&locked);
    sql.routes(&to_check);
    sql.members(&groups);
    if !acks.is_empty() {
        // A plain read of the end is enough to clamp where the
        // conversation is not locked: it only grows, so a value a moment
        // old is still a position that exists. Not locking it keeps acks
        // from queueing behind other nodes' appends.
        let unlocked: BTreeSet<i64> = acks
            .iter()
            .map(|(_, _, conversation, _)| to_db(conversation.0))
            .filter(|conversation| !locked.contains(conversation))
            .collect();
        sql.ends(&unlocked);
    }
    // The member rows this batch writes, locked here in key order with the
    // rest: the acks' positions, and each sender's (whose read position
    // the append moves in step 3). Taking a row lock only in step 3 would
    // let two nodes' batches each hold what the other waits for.
    let mut rows: BTreeSet<(i64, i64)> = acks
        .iter()
        .map(|(_, user, conversation, _)| (to_db(conversation.0), to_db(user.0)))
        .collect();
    for (message, route) in appends.iter().zip(routes) {
        if let Route::Conversation { id, .. } = *route {
            rows.insert((id, to_db(message.sender_id.0)));
        }
    }
    sql.lock_positions(&rows);
    sql.run(conn).await
}

/// Statements that carry only numbers, sent together in one round trip.
/// Each one's rows start with a constant naming the statement, so that the
/// rows of all of them can be read as one list.
#[derive(Default)]
struct Statements {
    sql: Vec<String>,
}

/// The constants that name the statements' rows.
const LOCKED: i64 = 1;
const FRIENDS: i64 = 2;
const MEMBERSHIPS: i64 = 3;
const MEMBERS: i64 = 4;
const ENDS: i64 = 5;
const POSITIONS: i64 = 6;

impl Statements {
    /// Locks `conversations` in id order and reads their `last_seq`.
    fn lock(&mut self, conversations: &BTreeSet<i64>) {
        if !conversations.is_empty() {
            self.sql.push(format!(
                "SELECT {LOCKED}, id, last_seq, 0 FROM conversations WHERE id IN ({}) \
                 ORDER BY id FOR UPDATE",
                join_numbers(conversations)
            ));
        }
    }

    /// Reads the conversation each of `appends` may write to.
    fn routes(&mut self, appends: &[&NewMessage]) {
        let mut direct = BTreeSet::new();
        let mut group = BTreeSet::new();
        for message in appends {
            let sender = to_db(message.sender_id.0);
            match message.target {
                Target::User(to) => direct.insert((sender, to_db(to.0))),
                Target::Group(id) => group.insert((to_db(id.0), sender)),
            };
        }
        if !direct.is_empty() {
            self.sql.push(format!(
                "SELECT {FRIENDS}, user_id, friend_id, conversation_id FROM friends WHERE {}",
                pairs("user_id", "friend_id", &direct)
            ));
        }
        if !group.is_empty() {
            // A subquery, not a join, for the reason given at SELECT_STORED.
            self.sql.push(format!(
                "SELECT {MEMBERSHIPS}, m.user_id, m.group_id, \
                 (SELECT g.conversation_id FROM chat_groups g WHERE g.id = m.group_id) \
                 FROM group_members m WHERE {}",
                pairs("m.group_id", "m.user_id", &group)
            ));
        }
    }

    /// Reads the members of `conversations`.
    fn members(&mut self, conversations: &BTreeSet<i64>) {
        if !conversations.is_empty() {
            self.sql.push(format!(
                "SELECT {MEMBERS}, conversation_id, user_id, 0 FROM conversation_members \
                 WHERE conversation_id IN ({}) ORDER BY conversation_id, user_id",
                join_numbers(conversations)
            ));
        }
    }

    /// Reads the `last_seq` of `conversations`, without locking.
    fn ends(&mut self, conversations: &BTreeSet<i64>) {
        if !conversations.is_empty() {
            self.sql.push(format!(
                "SELECT {ENDS}, id, last_seq, 0 FROM conversations WHERE id IN ({})",
                join_numbers(conversations)
            ));
        }
    }

    /// Locks the (conversation, user) member rows in key order and reads
    /// their acknowledged positions.
    fn lock_positions(&mut self, rows: &BTreeSet<(i64, i64)>) {
        if !rows.is_empty() {
            self.sql.push(format!(
                "SELECT {POSITIONS}, conversation_id, user_id, acked_seq FROM conversation_members \
                 WHERE {} ORDER BY conversation_id, user_id FOR UPDATE",
                pairs("conversation_id", "user_id", rows)
            ));
        }
    }

    /// Sends the statements (if any) and sorts their rows.
    async fn run(self, conn: &mut MySqlConnection) -> Result<Reads> {
        let mut reads = Reads::default();
        if self.sql.is_empty() {
            return Ok(reads);
        }
        // Without arguments, sqlx sends the text as is (the text protocol,
        // which takes several statements) and returns every statement's rows.
        let rows = conn.fetch_all(self.sql.join("; ").as_str()).await?;
        for row in rows {
            let (part, a, b, c): (i64, i64, i64, i64) = (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            );
            match part {
                LOCKED => {
                    reads.last_seq.insert(a, b);
                }
                FRIENDS => {
                    reads.friends.insert((a, b), c);
                }
                MEMBERSHIPS => {
                    reads.memberships.insert((a, b), c);
                }
                MEMBERS => reads.members.entry(a).or_default().push(UserId(from_db(b))),
                ENDS => {
                    reads.ack_ends.insert(a, b);
                }
                POSITIONS => {
                    reads.ack_rows.insert((a, b), c);
                }
                _ => {}
            }
        }
        Ok(reads)
    }
}

/// What [`Statements`] read.
#[derive(Default)]
struct Reads {
    /// Locked conversations: `last_seq` by id.
    last_seq: BTreeMap<i64, i64>,
    /// (user, friend) to their conversation.
    friends: HashMap<(i64, i64), i64>,
    /// (user, group) to the group's conversation.
    memberships: HashMap<(i64, i64), i64>,
    /// Members of group conversations, ordered by id.
    members: HashMap<i64, Vec<UserId>>,
    /// Conversations of acks that were not locked: `last_seq` by id.
    ack_ends: BTreeMap<i64, i64>,
    /// (conversation, user) to the acknowledged position, locked.
    ack_rows: BTreeMap<(i64, i64), i64>,
}

impl Reads {
    /// The conversation `message`'s sender may write to, if any.
    fn route_of(&self, message: &NewMessage) -> Option<i64> {
        let sender = to_db(message.sender_id.0);
        match message.target {
            Target::User(to) => self.friends.get(&(sender, to_db(to.0))),
            Target::Group(id) => self.memberships.get(&(sender, to_db(id.0))),
        }
        .copied()
    }
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
    let found: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM {table} WHERE id IN ({})",
        join_numbers(ids)
    ))
    .fetch_all(&mut *conn)
    .await?;
    Ok(found.into_iter().collect())
}

/// The stored messages of the appends' `(sender, client_msg_id)`s.
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

/// Step 2: the new messages, in one statement (their text bound, never
/// written into the SQL).
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

/// Step 3: the statement that sets each numbered conversation's new
/// `last_seq` and `last_activity_ms` (its newest message's time), if any.
fn advance_conversations(last: &BTreeMap<i64, (i64, i64)>) -> Option<String> {
    if last.is_empty() {
        return None;
    }
    let mut sql = "UPDATE conversations SET last_seq = CASE id".to_owned();
    for (conversation, (seq, _)) in last {
        let _ = write!(sql, " WHEN {conversation} THEN {seq}");
    }
    sql.push_str(" END, last_activity_ms = CASE id");
    for (conversation, (_, at_ms)) in last {
        let _ = write!(sql, " WHEN {conversation} THEN {at_ms}");
    }
    let _ = write!(sql, " END WHERE id IN ({})", join_numbers(last.keys()));
    Some(sql)
}

/// Step 3: the statement that moves each sender's read position to their
/// newest message of the batch (whoever writes has read what they answer,
/// so every message after a member's read position is someone else's and
/// the unread count needs no counting), if any.
fn advance_readers(readers: &BTreeMap<(i64, i64), i64>) -> Option<String> {
    if readers.is_empty() {
        return None;
    }
    let mut sql = "UPDATE conversation_members SET read_seq = GREATEST(read_seq, CASE".to_owned();
    for ((conversation, user), seq) in readers {
        let _ = write!(
            sql,
            " WHEN conversation_id = {conversation} AND user_id = {user} THEN {seq}"
        );
    }
    let keys: BTreeSet<(i64, i64)> = readers.keys().copied().collect();
    let _ = write!(
        sql,
        " ELSE read_seq END) WHERE {}",
        pairs("conversation_id", "user_id", &keys)
    );
    Some(sql)
}

/// The members of `conversations` that step 1 did not read, each list
/// ordered by id.
async fn group_members(
    conn: &mut MySqlConnection,
    conversations: &BTreeSet<i64>,
) -> Result<HashMap<i64, Vec<UserId>>> {
    let mut sql = Statements::default();
    sql.members(conversations);
    Ok(sql.run(conn).await?.members)
}

/// Moves each ack's position forward (never back, never past its
/// conversation's end in `ends`), given the locked positions in `rows`;
/// returns each ack's result by item index, with the statement that writes
/// the positions that moved, if any.
fn ack_all(
    acks: &[(usize, UserId, ConversationId, Seq)],
    ends: &BTreeMap<i64, i64>,
    rows: BTreeMap<(i64, i64), i64>,
) -> (Vec<(usize, Result<Seq>)>, Option<String>) {
    let mut positions: BTreeMap<(i64, i64), (i64, bool)> = rows
        .into_iter()
        .map(|(key, acked)| (key, (acked, false)))
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
    let changed: BTreeMap<(i64, i64), i64> = positions
        .into_iter()
        .filter(|(_, (_, changed))| *changed)
        .map(|(key, (acked, _))| (key, acked))
        .collect();
    if changed.is_empty() {
        return (results, None);
    }
    let mut sql = "UPDATE conversation_members SET acked_seq = CASE".to_owned();
    for ((conversation, user), acked) in &changed {
        let _ = write!(
            sql,
            " WHEN conversation_id = {conversation} AND user_id = {user} THEN {acked}"
        );
    }
    let keys: BTreeSet<(i64, i64)> = changed.keys().copied().collect();
    let _ = write!(
        sql,
        " ELSE acked_seq END WHERE {}",
        pairs("conversation_id", "user_id", &keys)
    );
    (results, Some(sql))
}

/// `1, 2, 3`.
fn join_numbers<'a>(numbers: impl IntoIterator<Item = &'a i64>) -> String {
    let mut text = String::new();
    for (index, number) in numbers.into_iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{number}");
    }
    text
}

/// `(a = 1 AND b = 2) OR ...` for `pairs`: point lookups on a two-column
/// key, which the range optimiser reads as one index range each.
fn pairs(a: &str, b: &str, pairs: &BTreeSet<(i64, i64)>) -> String {
    let mut text = String::new();
    for (index, (first, second)) in pairs.iter().enumerate() {
        if index > 0 {
            text.push_str(" OR ");
        }
        let _ = write!(text, "({a} = {first} AND {b} = {second})");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_into_the_text_and_nothing_else() {
        assert_eq!(
            join_numbers(&[1, -2, i64::MAX]),
            "1, -2, 9223372036854775807"
        );
        let keys: BTreeSet<(i64, i64)> = [(3, 4), (1, 2)].into();
        assert_eq!(
            pairs("a", "b", &keys),
            "(a = 1 AND b = 2) OR (a = 3 AND b = 4)"
        );
        let last: BTreeMap<i64, (i64, i64)> = [(7, (70, 1700)), (5, (50, 1500))].into();
        assert_eq!(
            advance_conversations(&last).unwrap(),
            "UPDATE conversations SET last_seq = CASE id WHEN 5 THEN 50 WHEN 7 THEN 70 END, \
             last_activity_ms = CASE id WHEN 5 THEN 1500 WHEN 7 THEN 1700 END WHERE id IN (5, 7)"
        );
        assert!(advance_conversations(&BTreeMap::new()).is_none());
        let readers: BTreeMap<(i64, i64), i64> = [((5, 2), 50), ((5, 1), 49)].into();
        assert_eq!(
            advance_readers(&readers).unwrap(),
            "UPDATE conversation_members SET read_seq = GREATEST(read_seq, CASE \
             WHEN conversation_id = 5 AND user_id = 1 THEN 49 \
             WHEN conversation_id = 5 AND user_id = 2 THEN 50 ELSE read_seq END) \
             WHERE (conversation_id = 5 AND user_id = 1) OR (conversation_id = 5 AND user_id = 2)"
        );
        assert!(advance_readers(&BTreeMap::new()).is_none());
    }

    #[test]
    fn acks_move_forward_within_the_log_and_refuse_strangers() {
        let ends: BTreeMap<i64, i64> = [(10, 5)].into();
        let rows: BTreeMap<(i64, i64), i64> = [((10, 1), 2)].into();
        let acks = [
            (0, UserId(1), ConversationId(10), Seq(4)),
            (1, UserId(1), ConversationId(10), Seq(3)),
            (2, UserId(1), ConversationId(10), Seq(99)),
            (3, UserId(2), ConversationId(10), Seq(1)),
        ];
        let (results, sql) = ack_all(&acks, &ends, rows);
        let seqs: Vec<Option<u64>> = results
            .iter()
            .map(|(_, result)| result.as_ref().ok().map(|seq| seq.0))
            .collect();
        assert_eq!(seqs, [Some(4), Some(4), Some(5), None]);
        assert_eq!(
            sql.unwrap(),
            "UPDATE conversation_members SET acked_seq = CASE WHEN conversation_id = 10 \
             AND user_id = 1 THEN 5 ELSE acked_seq END WHERE (conversation_id = 10 AND user_id = 1)"
        );
    }
}
