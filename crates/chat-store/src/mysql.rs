//! The MySQL backend.

use async_trait::async_trait;
use chat_proto::{
    ChatMessage, ConversationId, Cursor, FriendRequestInfo, GroupId, Role, Seq, UserId,
};

use crate::error::{Result, StoreError};
use crate::repo::*;

/// A store on MySQL.
#[derive(Debug)]
pub struct MysqlStore {
    _private: (),
}

impl MysqlStore {
    /// Opens `mysql://...` and applies the migrations.
    ///
    /// # Errors
    /// A configuration, database or migration error.
    pub async fn open(url: &str) -> Result<Self> {
        Err(not_ready(url))
    }
}

fn not_ready(_what: &str) -> StoreError {
    StoreError::Config("the MySQL backend is being built".to_owned())
}

#[async_trait]
impl UserStore for MysqlStore {
    async fn create_user(
        &self,
        _name: &str,
        _password_hash: &str,
        _now_ms: i64,
    ) -> Result<UserRecord> {
        Err(not_ready("create_user"))
    }
    async fn user_by_name(&self, _name: &str) -> Result<Option<UserRecord>> {
        Err(not_ready("user_by_name"))
    }
    async fn user_by_id(&self, _id: UserId) -> Result<Option<UserRecord>> {
        Err(not_ready("user_by_id"))
    }
}
#[async_trait]
impl TokenStore for MysqlStore {
    async fn create_token(
        &self,
        _token_hash: &str,
        _user: UserId,
        _expires_at_ms: i64,
    ) -> Result<()> {
        Err(not_ready("create_token"))
    }
    async fn user_for_token(
        &self,
        _token_hash: &str,
        _now_ms: i64,
    ) -> Result<Option<(UserId, i64)>> {
        Err(not_ready("user_for_token"))
    }
    async fn revoke_token(&self, _token_hash: &str, _now_ms: i64) -> Result<()> {
        Err(not_ready("revoke_token"))
    }
}
#[async_trait]
impl FriendStore for MysqlStore {
    async fn add_friend_request(
        &self,
        _from: UserId,
        _to: UserId,
        _message: Option<&str>,
        _now_ms: i64,
    ) -> Result<FriendAddResult> {
        Err(not_ready("add_friend_request"))
    }
    async fn respond_friend_request(
        &self,
        _from: UserId,
        _to: UserId,
        _accept: bool,
        _now_ms: i64,
    ) -> Result<Option<ConversationId>> {
        Err(not_ready("respond_friend_request"))
    }
    async fn remove_friend(&self, _user: UserId, _friend: UserId) -> Result<()> {
        Err(not_ready("remove_friend"))
    }
    async fn friends_of(&self, _user: UserId) -> Result<Vec<FriendRecord>> {
        Err(not_ready("friends_of"))
    }
    async fn friend(&self, _user: UserId, _friend: UserId) -> Result<Option<FriendRecord>> {
        Err(not_ready("friend"))
    }
    async fn update_friend(
        &self,
        _user: UserId,
        _friend: UserId,
        _remark: Option<&str>,
        _category: Option<&str>,
    ) -> Result<FriendRecord> {
        Err(not_ready("update_friend"))
    }
    async fn pending_requests(
        &self,
        _user: UserId,
    ) -> Result<(Vec<FriendRequestInfo>, Vec<FriendRequestInfo>)> {
        Err(not_ready("pending_requests"))
    }
}
#[async_trait]
impl GroupStore for MysqlStore {
    async fn create_group(
        &self,
        _owner: UserId,
        _name: &str,
        _description: &str,
        _now_ms: i64,
    ) -> Result<GroupRecord> {
        Err(not_ready("create_group"))
    }
    async fn group(&self, _group: GroupId) -> Result<Option<GroupRecord>> {
        Err(not_ready("group"))
    }
    async fn role(&self, _group: GroupId, _user: UserId) -> Result<Option<Role>> {
        Err(not_ready("role"))
    }
    async fn add_member(
        &self,
        _group: GroupId,
        _user: UserId,
        _role: Role,
        _now_ms: i64,
    ) -> Result<()> {
        Err(not_ready("add_member"))
    }
    async fn remove_member(&self, _group: GroupId, _user: UserId) -> Result<()> {
        Err(not_ready("remove_member"))
    }
    async fn set_role(&self, _group: GroupId, _user: UserId, _role: Role) -> Result<()> {
        Err(not_ready("set_role"))
    }
    async fn dissolve_group(&self, _group: GroupId) -> Result<Vec<UserId>> {
        Err(not_ready("dissolve_group"))
    }
    async fn members(&self, _group: GroupId) -> Result<Vec<MemberRecord>> {
        Err(not_ready("members"))
    }
    async fn groups_of(&self, _user: UserId) -> Result<Vec<(GroupRecord, Role)>> {
        Err(not_ready("groups_of"))
    }
}
#[async_trait]
impl MessageStore for MysqlStore {
    async fn append_message(&self, _message: NewMessage) -> Result<Appended> {
        Err(not_ready("append_message"))
    }
    async fn is_conversation_member(
        &self,
        _conversation: ConversationId,
        _user: UserId,
    ) -> Result<bool> {
        Err(not_ready("is_conversation_member"))
    }
    async fn history(
        &self,
        _conversation: ConversationId,
        _before: Option<Seq>,
        _after: Option<Seq>,
        _limit: u32,
    ) -> Result<Vec<ChatMessage>> {
        Err(not_ready("history"))
    }
    async fn ack(&self, _user: UserId, _conversation: ConversationId, _seq: Seq) -> Result<Seq> {
        Err(not_ready("ack"))
    }
    async fn unacked(
        &self,
        _user: UserId,
        _start: Option<Cursor>,
        _limit: u32,
    ) -> Result<Vec<ChatMessage>> {
        Err(not_ready("unacked"))
    }
    async fn unacked_count(&self, _user: UserId) -> Result<u64> {
        Err(not_ready("unacked_count"))
    }
    async fn sync(
        &self,
        _user: UserId,
        _cursors: &[Cursor],
        _limit: u32,
    ) -> Result<Vec<ChatMessage>> {
        Err(not_ready("sync"))
    }
}
#[async_trait]
impl Store for MysqlStore {
    async fn close(&self) {}
    fn backend(&self) -> &'static str {
        "mysql"
    }
}
